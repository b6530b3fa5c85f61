// RTN: fit the min-max grid to each group (or the whole tensor) and round every weight.
#include "lowbit/rtn.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/grid.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// Index of the first non-finite value of row r (for the error message), or -1.
i64 first_non_finite(const std::vector<float>& row) {
  for (std::size_t c = 0; c < row.size(); ++c)
    if (!std::isfinite(row[c])) return static_cast<i64>(c);
  return -1;
}

[[noreturn]] void throw_non_finite(const AnyMatrixView& W, const std::vector<i64>& bad_col) {
  for (i64 r = 0; r < W.rows; ++r)
    if (bad_col[static_cast<std::size_t>(r)] >= 0) {
      std::vector<float> row(static_cast<std::size_t>(W.cols));
      W.load_row(r, row.data());
      const i64 c = bad_col[static_cast<std::size_t>(r)];
      throw InvalidArgument(str_cat("W must be finite, but W[", r, ", ", c, "] = ",
                                    row[static_cast<std::size_t>(c)], " (", W.describe(),
                                    "); replace or mask NaN/inf weights before quantizing"));
    }
  throw InvalidArgument("W must be finite");
}

}  // namespace

GroupedIntShape rtn_output_shape(const AnyMatrixView& W, const RtnParams& p) {
  return make_grouped_shape(p.bits, W.rows, W.cols, p.group_size);
}

void rtn_quantize(const AnyMatrixView& W, const RtnParams& p, const GroupedIntMutView& out) {
  const GroupedIntShape s = rtn_output_shape(W, p);
  LOWBIT_CHECK(out.shape.rows == s.rows && out.shape.cols == s.cols && out.shape.bits == s.bits &&
                   out.shape.group_size == s.group_size && out.shape.per_tensor == s.per_tensor,
               "output buffers do not match the RTN output shape");
  const GridKernels& k = grid_kernels();
  const i64 G = s.n_groups();
  const int maxq = s.maxq();
  std::vector<i64> bad_col(static_cast<std::size_t>(s.rows), -1);

  // Per-tensor: one grid from the global range (min/max are exact, so the reduction order
  // cannot change the result).
  Grid tensor_grid{1.0f, 0.0f};
  if (s.per_tensor) {
    std::vector<float> lo(static_cast<std::size_t>(s.rows)), hi(static_cast<std::size_t>(s.rows));
    parallel_for(
        s.rows,
        [&](i64 r) {
          std::vector<float> row(static_cast<std::size_t>(s.cols));
          W.load_row(r, row.data());
          const auto ri = static_cast<std::size_t>(r);
          if (!k.range(row.data(), s.cols, &lo[ri], &hi[ri])) bad_col[ri] = first_non_finite(row);
        },
        16);
    if (std::any_of(bad_col.begin(), bad_col.end(), [](i64 c) { return c >= 0; }))
      throw_non_finite(W, bad_col);
    tensor_grid = minmax_grid(*std::min_element(lo.begin(), lo.end()),
                              *std::max_element(hi.begin(), hi.end()), s.bits, p.sym);
    out.scales[0] = tensor_grid.scale;
    out.zeros[0] = static_cast<std::uint8_t>(tensor_grid.zero);
  }

  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> row(static_cast<std::size_t>(s.cols));
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        W.load_row(r, row.data());
        for (i64 g = 0; g < G; ++g) {
          const i64 c0 = g * s.group_size;
          const i64 len = std::min(s.group_size, s.cols - c0);
          Grid grid = tensor_grid;
          if (!s.per_tensor) {
            float lo, hi;
            if (!k.range(row.data() + c0, len, &lo, &hi)) {
              bad_col[static_cast<std::size_t>(r)] = first_non_finite(row);
              return;
            }
            grid = minmax_grid(lo, hi, s.bits, p.sym);
            out.scales[r * G + g] = grid.scale;
            out.zeros[r * G + g] = static_cast<std::uint8_t>(grid.zero);
          }
          k.quantize_codes(row.data() + c0, len, grid.scale, grid.zero, maxq, codes.data() + c0);
        }
        pack_codes(codes.data(), s.cols, s.bits, out.qweight + r * s.row_bytes());
      },
      16);
  if (std::any_of(bad_col.begin(), bad_col.end(), [](i64 c) { return c >= 0; }))
    throw_non_finite(W, bad_col);
}

}  // namespace lowbit
