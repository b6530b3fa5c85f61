// FP8 weights with float32 scales per tensor / output channel / block (layout: fp8.hpp).
#include "lowbit/fp8.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lowbit/parallel.hpp"

namespace lowbit {

Fp8Shape fp8_output_shape(i64 rows, i64 cols, const Fp8Params& p) {
  LOWBIT_CHECK(rows > 0 && cols > 0, "weight must be non-empty, got shape (", rows, ", ", cols, ")");
  Fp8Shape s;
  s.rows = rows;
  s.cols = cols;
  switch (p.strategy) {
    case Fp8Strategy::Tensor:
      s.block_rows = rows;
      s.block_cols = cols;
      break;
    case Fp8Strategy::Channel:
      s.block_rows = 1;
      s.block_cols = cols;
      break;
    case Fp8Strategy::Block:
      LOWBIT_CHECK(p.block_rows >= 1 && p.block_cols >= 1, "weight_block_size must be >= 1 in both dimensions, got (",
                   p.block_rows, ", ", p.block_cols, ")");
      s.block_rows = std::min(p.block_rows, rows);
      s.block_cols = std::min(p.block_cols, cols);
      break;
    default:
      throw InvalidArgument(str_cat("unknown FP8 strategy ", static_cast<int>(p.strategy)));
  }
  return s;
}

namespace {

template <Fp8Kind K>
void quantize_impl(const AnyMatrixView& W, const Fp8Shape& s, std::uint8_t* codes, float* scales) {
  const float max_value = fp8_spec(K).max_value;
  const i64 SR = s.scale_rows(), SC = s.scale_cols();
  // Pass 1, parallel over rows: each row's amax per column tile; non-finite weights recorded.
  std::vector<float> row_amax(static_cast<std::size_t>(s.rows * SC));
  std::vector<i64> bad_col(static_cast<std::size_t>(s.rows), -1);
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> row(static_cast<std::size_t>(s.cols));
        W.load_row(r, row.data());
        for (i64 tc = 0; tc < SC; ++tc) {
          float amax = 0.0f;
          const i64 c1 = std::min(s.cols, (tc + 1) * s.block_cols);
          for (i64 c = tc * s.block_cols; c < c1; ++c) {
            const float v = row[static_cast<std::size_t>(c)];
            if (!std::isfinite(v)) {
              bad_col[static_cast<std::size_t>(r)] = c;
              return;
            }
            amax = std::max(amax, std::fabs(v));
          }
          row_amax[static_cast<std::size_t>(r * SC + tc)] = amax;
        }
      },
      min_rows_per_thread(s.cols));
  check_non_finite_marks(W, bad_col);
  // Tile scales: max is exact, so the reduction order does not matter.
  for (i64 tr = 0; tr < SR; ++tr)
    for (i64 tc = 0; tc < SC; ++tc) {
      float amax = 0.0f;
      for (i64 r = tr * s.block_rows; r < std::min(s.rows, (tr + 1) * s.block_rows); ++r)
        amax = std::max(amax, row_amax[static_cast<std::size_t>(r * SC + tc)]);
      float sc = amax / max_value;
      // a tile of subnormal float32 weights whose scale underflows keeps the smallest scale
      if (amax > 0.0f && sc == 0.0f) sc = std::numeric_limits<float>::denorm_min();
      scales[tr * SC + tc] = sc;
    }
  // Pass 2: codes = fp8(W / scale), saturating.
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> row(static_cast<std::size_t>(s.cols));
        W.load_row(r, row.data());
        const float* srow = scales + (r / s.block_rows) * SC;
        std::uint8_t* out = codes + r * s.cols;
        for (i64 c = 0; c < s.cols; ++c) {
          const float sc = srow[c / s.block_cols];
          out[c] = sc > 0.0f ? fp32_to_fp8<K>(row[static_cast<std::size_t>(c)] / sc) : std::uint8_t{0};
        }
      },
      min_rows_per_thread(s.cols));
}

}  // namespace

void fp8_quantize(const AnyMatrixView& W, const Fp8Params& p, std::uint8_t* codes, float* scales) {
  const Fp8Shape s = fp8_output_shape(W.rows, W.cols, p);
  if (p.kind == Fp8Kind::E4M3)
    quantize_impl<Fp8Kind::E4M3>(W, s, codes, scales);
  else
    quantize_impl<Fp8Kind::E5M2>(W, s, codes, scales);
}

void fp8_dequantize(const Fp8Shape& s, Fp8Kind kind, const std::uint8_t* codes, const float* scales, float* out) {
  const i64 SC = s.scale_cols();
  for (i64 i = 0; i < s.scale_rows() * SC; ++i)
    LOWBIT_CHECK(std::isfinite(scales[i]) && scales[i] >= 0.0f, "scales[", i / SC, ", ", i % SC,
                 "] must be finite and >= 0, got ", scales[i]);
  // a table of the 256 code values: decoding is then one load per weight
  float lut[256];
  for (int b = 0; b < 256; ++b) lut[b] = fp8_to_fp32(kind, static_cast<std::uint8_t>(b));
  parallel_for(
      s.rows,
      [&](i64 r) {
        const float* srow = scales + (r / s.block_rows) * SC;
        const std::uint8_t* in = codes + r * s.cols;
        float* y = out + r * s.cols;
        for (i64 c = 0; c < s.cols; ++c) y[c] = srow[c / s.block_cols] * lut[in[c]];
      },
      min_rows_per_thread(s.cols));
}

}  // namespace lowbit
