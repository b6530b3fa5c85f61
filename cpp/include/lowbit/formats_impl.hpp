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

// bitsandbytes rows (bnb4.cpp, llm_int8.cpp): GroupParams.scales holds the absmax per group.
void nf4_from_float_ref(const float* x, void* dst, i64 n, const GroupParams* p);
void nf4_to_float_ref(const void* src, float* y, i64 n, const GroupParams* p);
void fp4_from_float_ref(const float* x, void* dst, i64 n, const GroupParams* p);
void fp4_to_float_ref(const void* src, float* y, i64 n, const GroupParams* p);
void llm_int8_from_float_ref(const float* x, void* dst, i64 n, const GroupParams* p);
void llm_int8_to_float_ref(const void* src, float* y, i64 n, const GroupParams* p);
// FP8 elements (fp8_formats.cpp) and torchao's float-zero-point int4 (tinygemm_format.cpp).
void f8_e4m3_from_float(const float* x, void* dst, i64 n, const GroupParams*);
void f8_e4m3_to_float(const void* src, float* y, i64 n, const GroupParams*);
void f8_e5m2_from_float(const float* x, void* dst, i64 n, const GroupParams*);
void f8_e5m2_to_float(const void* src, float* y, i64 n, const GroupParams*);
void tinygemm_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void tinygemm_to_float(const void* src, float* y, i64 n, const GroupParams* p);

// ggml block formats (ggml_legacy.cpp, ggml_kquants.cpp): what ggml_quantize_chunk writes
// for one row (p->quant_weights = optional imatrix) and ggml's to_float.
void q4_0_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q4_0_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q4_1_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q4_1_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q5_0_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q5_0_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q5_1_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q5_1_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q8_0_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q8_0_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q8_1_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q8_1_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q2_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q2_K_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q3_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q3_K_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q4_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q4_K_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q5_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q5_K_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q6_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q6_K_to_float(const void* src, float* y, i64 n, const GroupParams*);
void q8_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void q8_K_to_float(const void* src, float* y, i64 n, const GroupParams*);
void iq4_nl_from_float(const float* x, void* dst, i64 n, const GroupParams* p);
void iq4_nl_to_float(const void* src, float* y, i64 n, const GroupParams*);

}  // namespace lowbit::formats
