// The int4_tinygemm row of the format table (torchao's float-zero-point int4, tinygemm.hpp).
#include <vector>

#include "lowbit/formats_impl.hpp"
#include "lowbit/tinygemm.hpp"

namespace lowbit::formats {

namespace {
// The float zero points of a row's groups: GroupParams::float_zeros when given; otherwise the
// integer zero points z of an affine grid W = s * (q - z), which is the same grid as
// W = (q - 8) * s + (8 - z) * s.
std::vector<float> float_zeros_of(const GroupParams* p, i64 n) {
  LOWBIT_CHECK(p != nullptr && p->group_size > 0 && p->scales != nullptr, "int4_tinygemm needs group scales and zeros");
  const i64 G = (n + p->group_size - 1) / p->group_size;
  std::vector<float> z(static_cast<std::size_t>(G));
  for (i64 g = 0; g < G; ++g) {
    if (p->float_zeros != nullptr) {
      z[static_cast<std::size_t>(g)] = p->float_zeros[g];
    } else {
      LOWBIT_CHECK(p->zeros != nullptr, "int4_tinygemm needs zero points (float_zeros or integer zeros)");
      z[static_cast<std::size_t>(g)] = (8.0f - static_cast<float>(p->zeros[g])) * p->scales[g];
    }
  }
  return z;
}
}  // namespace

void tinygemm_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  std::vector<float> origin = float_zeros_of(p, n);
  for (std::size_t g = 0; g < origin.size(); ++g) origin[g] -= 8.0f * p->scales[g];
  tinygemm_quantize_row(x, n, p->group_size, p->scales, origin.data(), static_cast<std::uint8_t*>(dst));
}
void tinygemm_to_float(const void* src, float* y, i64 n, const GroupParams* p) {
  const std::vector<float> z = float_zeros_of(p, n);
  tinygemm_dequantize_row(static_cast<const std::uint8_t*>(src), n, p->group_size, p->scales, z.data(), y);
}

}  // namespace lowbit::formats
