// torchao's int4 "tinygemm" weight-only format (float zero point): see tinygemm.hpp.
#include "lowbit/tinygemm.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "lowbit/grouped_int.hpp"
#include "lowbit/half.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {
constexpr float kMid = 8.0f;  // (quant_max + quant_min + 1) / 2 for uint4
inline float round_bf16(float v) { return bf16_to_fp32(fp32_to_bf16(v)); }
// clamp to [0, 15]; NaN (a zero scale passed by hand) becomes 0 rather than an undefined cast
inline std::uint8_t code4(float q) { return static_cast<std::uint8_t>(q >= 0.0f ? (q <= 15.0f ? q : 15.0f) : 0.0f); }
}  // namespace

TinygemmShape tinygemm_output_shape(i64 rows, i64 cols, i64 group_size) {
  LOWBIT_CHECK(rows > 0 && cols > 0, "weight must be non-empty, got shape (", rows, ", ", cols, ")");
  LOWBIT_CHECK(group_size >= 1, "group_size must be >= 1, got ", group_size);
  LOWBIT_CHECK(cols % group_size == 0, "in_features=", cols, " is not a multiple of group_size=", group_size,
               " (torchao's int4 weight-only format needs whole groups)");
  return TinygemmShape{rows, cols, group_size};
}

void tinygemm_quantize_row(const float* x, i64 n, i64 group_size, const float* scales, const float* origins,
                           std::uint8_t* dst) {
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
  for (i64 c0 = 0, g = 0; c0 < n; c0 += group_size, ++g) {
    const float min_val = origins[g];
    for (i64 c = c0; c < std::min(n, c0 + group_size); ++c) {
      const float q = std::nearbyint((x[c] - min_val) / scales[g]);  // half to even
      codes[static_cast<std::size_t>(c)] = code4(q);
    }
  }
  pack_codes(codes.data(), n, 4, dst);
}

void tinygemm_dequantize_row(const std::uint8_t* src, i64 n, i64 group_size, const float* scales,
                             const float* zeros, float* y) {
  for (i64 c = 0; c < n; ++c) {
    const i64 g = c / group_size;
    const auto q = static_cast<float>((src[c >> 1] >> ((c & 1) * 4)) & 0xf);
    y[c] = (q - kMid) * scales[g] + zeros[g];
  }
}

void tinygemm_quantize(const AnyMatrixView& W, i64 group_size, std::uint8_t* qweight, std::uint16_t* scales_bf16,
                       std::uint16_t* zeros_bf16) {
  const TinygemmShape s = tinygemm_output_shape(W.rows, W.cols, group_size);
  const i64 G = s.n_groups();
  std::vector<i64> bad_col(static_cast<std::size_t>(s.rows), -1);
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> row(static_cast<std::size_t>(s.cols));
        std::vector<float> sc(static_cast<std::size_t>(G)), origin(static_cast<std::size_t>(G));
        W.load_row(r, row.data());
        for (i64 g = 0; g < G; ++g) {
          const float* x = row.data() + g * group_size;
          float lo = x[0], hi = x[0];
          for (i64 i = 0; i < group_size; ++i) {
            if (!std::isfinite(x[i])) {
              bad_col[static_cast<std::size_t>(r)] = g * group_size + i;
              return;
            }
            lo = std::min(lo, x[i]);
            hi = std::max(hi, x[i]);
          }
          const float scale = std::max((hi - lo) / 15.0f, FLT_MIN);
          LOWBIT_CHECK(std::isfinite(scale), "the range of W[", r, ", ", g * group_size, ":", (g + 1) * group_size,
                       "] overflows float32 (min ", lo, ", max ", hi, ")");
          const float zero = lo + scale * kMid;
          const std::uint16_t sb = fp32_to_bf16(scale), zb = fp32_to_bf16(zero);
          scales_bf16[r * G + g] = sb;
          zeros_bf16[r * G + g] = zb;
          sc[static_cast<std::size_t>(g)] = bf16_to_fp32(sb);
          // torch evaluates zero - scale * 8 in the params' dtype (bfloat16)
          origin[static_cast<std::size_t>(g)] = round_bf16(bf16_to_fp32(zb) - bf16_to_fp32(sb) * kMid);
        }
        tinygemm_quantize_row(row.data(), s.cols, group_size, sc.data(), origin.data(), qweight + r * s.row_bytes());
      },
      min_rows_per_thread(s.cols));
  check_non_finite_marks(W, bad_col);
}

void tinygemm_dequantize(const TinygemmShape& s, const std::uint8_t* qweight, const std::uint16_t* scales_bf16,
                         const std::uint16_t* zeros_bf16, float* out) {
  const i64 G = s.n_groups();
  for (i64 i = 0; i < s.rows * G; ++i) {
    const float sc = bf16_to_fp32(scales_bf16[i]), zp = bf16_to_fp32(zeros_bf16[i]);
    LOWBIT_CHECK(std::isfinite(sc) && std::isfinite(zp), "scales/zeros[", i / G, ", ", i % G,
                 "] must be finite, got scale ", sc, " zero ", zp);
  }
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> sc(static_cast<std::size_t>(G)), zp(static_cast<std::size_t>(G));
        for (i64 g = 0; g < G; ++g) {
          sc[static_cast<std::size_t>(g)] = bf16_to_fp32(scales_bf16[r * G + g]);
          zp[static_cast<std::size_t>(g)] = bf16_to_fp32(zeros_bf16[r * G + g]);
        }
        tinygemm_dequantize_row(qweight + r * s.row_bytes(), s.cols, s.group_size, sc.data(), zp.data(),
                                out + r * s.cols);
      },
      min_rows_per_thread(s.cols));
}

}  // namespace lowbit
