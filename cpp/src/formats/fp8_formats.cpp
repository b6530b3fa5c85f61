// FP8 element formats (f8_e4m3, f8_e5m2) as format-table rows: one byte per element, the
// saturating round-to-nearest-even conversion of fp8.hpp. Scales live beside the codes in the
// FP8 weight layout (fp8.hpp), not in the row bytes.
#include <cstdint>

#include "lowbit/formats_impl.hpp"
#include "lowbit/fp8.hpp"

namespace lowbit::formats {

template <Fp8Kind K>
void fp8_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  auto* d = static_cast<std::uint8_t*>(dst);
  for (i64 i = 0; i < n; ++i) d[i] = fp32_to_fp8<K>(x[i]);
}
template <Fp8Kind K>
void fp8_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* s = static_cast<const std::uint8_t*>(src);
  for (i64 i = 0; i < n; ++i) y[i] = fp8_to_fp32<K>(s[i]);
}

void f8_e4m3_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  fp8_from_float<Fp8Kind::E4M3>(x, dst, n, p);
}
void f8_e4m3_to_float(const void* src, float* y, i64 n, const GroupParams* p) {
  fp8_to_float<Fp8Kind::E4M3>(src, y, n, p);
}
void f8_e5m2_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  fp8_from_float<Fp8Kind::E5M2>(x, dst, n, p);
}
void f8_e5m2_to_float(const void* src, float* y, i64 n, const GroupParams* p) {
  fp8_to_float<Fp8Kind::E5M2>(src, y, n, p);
}

}  // namespace lowbit::formats
