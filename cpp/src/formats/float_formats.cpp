// Plain float storage types (f32, f16, bf16) as format-table rows.
#include <cstdint>
#include <cstring>

#include "lowbit/formats_impl.hpp"
#include "lowbit/half.hpp"

namespace lowbit::formats {

void f32_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  std::memcpy(dst, x, static_cast<std::size_t>(n) * sizeof(float));
}
void f32_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  std::memcpy(y, src, static_cast<std::size_t>(n) * sizeof(float));
}
void f16_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  auto* d = static_cast<std::uint16_t*>(dst);
  for (i64 i = 0; i < n; ++i) d[i] = fp32_to_fp16(x[i]);
}
void f16_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* s = static_cast<const std::uint16_t*>(src);
  for (i64 i = 0; i < n; ++i) y[i] = fp16_to_fp32(s[i]);
}
void bf16_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  auto* d = static_cast<std::uint16_t*>(dst);
  for (i64 i = 0; i < n; ++i) d[i] = fp32_to_bf16(x[i]);
}
void bf16_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* s = static_cast<const std::uint16_t*>(src);
  for (i64 i = 0; i < n; ++i) y[i] = bf16_to_fp32(s[i]);
}

}  // namespace lowbit::formats
