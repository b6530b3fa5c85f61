// The GPTQ checkpoint layout (AutoGPTQ / transformers / vLLM "gptq"), REFERENCE §1.8.
//
//   qweight int32 [cols*bits/32, rows]  codes packed along the *input* dimension
//   qzeros  int32 [n_groups, rows*bits/32]  zero points packed along the output dimension
// Packing is one LSB-first bit stream of 32-bit words per column (for 2/4/8 bits each word
// holds 32/bits whole values; for 3 bits, 32 values span 3 words and values 10 and 21 cross
// word boundaries, exactly the AutoGPTQ scheme).
// Zero convention: v1 ("gptq") stores (z - 1) mod 2^bits, v2 ("gptq_v2") stores z. Unlike
// AutoGPTQ, a v1 zero of 0 wraps inside its own field and never corrupts its neighbours.
// Scales (fp16 [n_groups, rows]) and g_idx (int32 [cols]) are plain arrays handled by Python.
#pragma once

#include <cstdint>

#include "lowbit/grouped_int.hpp"

namespace lowbit {

enum class GptqFormat : int { V1 = 1, V2 = 2 };

// Throws InvalidArgument unless bits is 2, 3, 4 or 8 and the dimensions pack into whole words.
void check_gptq_packable(int bits, i64 rows, i64 cols);

// From the canonical layout (per-row groups; not per-tensor) to qweight/qzeros.
void gptq_pack(const GroupedIntConstView& q, GptqFormat fmt, std::int32_t* qweight,
               std::int32_t* qzeros);

// Back to the canonical layout: fills out.qweight (bit stream rows) and out.zeros.
// Scales are not touched.
void gptq_unpack(const std::int32_t* qweight, const std::int32_t* qzeros, GptqFormat fmt,
                 const GroupedIntMutView& out);

// Generic LSB-first packing of `n` values of `bits` bits into 32-bit words; word w of the
// output is written at dst[w * dst_stride]. n*bits must be a multiple of 32.
void pack_bits_u32(const std::uint8_t* values, i64 n, int bits, std::uint32_t* dst, i64 dst_stride);
void unpack_bits_u32(const std::uint32_t* src, i64 src_stride, i64 n, int bits, std::uint8_t* values);

}  // namespace lowbit
