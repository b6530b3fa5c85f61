// Reference row conversions behind the format table (src/formats/*.cpp). Internal: use
// traits(t).from_float_ref / to_float_ref rather than these names.
#pragma once

#include "lowbit/format_table.hpp"

namespace lowbit::formats {

void f32_from_float(const float* x, void* dst, i64 n, const GroupParams*);
void f32_to_float(const void* src, float* y, i64 n, const GroupParams*);
void f16_from_float(const float* x, void* dst, i64 n, const GroupParams*);
void f16_to_float(const void* src, float* y, i64 n, const GroupParams*);
void bf16_from_float(const float* x, void* dst, i64 n, const GroupParams*);
void bf16_to_float(const void* src, float* y, i64 n, const GroupParams*);

// Indexed by bits (entries 2..8 are set).
extern const FromFloatFn grouped_from_float_ref_table[9];
extern const ToFloatFn grouped_to_float_ref_table[9];
// HQQ rows (float zero points), indexed by bits (1..6 and 8 are set).
extern const FromFloatFn hqq_from_float_ref_table[9];
extern const ToFloatFn hqq_to_float_ref_table[9];

}  // namespace lowbit::formats
