// Symmetric int8 weight-only quantization with one scale per output channel (torchao's
// Int8WeightOnlyConfig, EETQ / TensorRT-LLM's W8A16), written in lowbit's grouped int8 layout.
//
// With q in [-128, 127] the grouped layout stores code = q + 128 and zero = 128, so
// W_hat[r, c] = scales[r] * (code - 128) = scales[r] * q: the same values as a signed int8
// tensor plus a float32 scale per row (an exporter subtracts 128).
//
// The two conventions differ in the scale and the rounding (REFERENCE.md §9.3, §9.5):
//   torchao: scale = max(amax / 127.5, FLT_EPSILON); q = clamp(rne(w * (1 / scale)), -128, 127)
//            (choose_qparams_affine SYMMETRIC + quantize_affine, float32 arithmetic);
//   EETQ:    scale = amax * (1 / 128);  q = clamp(round_half_away(w / scale), -128, 127)
//            (TensorRT-LLM's symmetric_quantize); an all-zero row gets scale 0 and q = 0.
#pragma once

#include "lowbit/grouped_int.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

enum class Int8ChannelRule : std::uint8_t { Torchao = 0, Eetq = 1 };

// Shape of the grouped int8 result: per output channel (group_size = cols).
GroupedIntShape int8_channel_output_shape(i64 rows, i64 cols);

// Quantizes W [out, in] into `out` (buffers sized by int8_channel_output_shape). Throws
// InvalidArgument naming the first non-finite weight. Bit-identical for any thread count.
void int8_channel_quantize(const AnyMatrixView& W, Int8ChannelRule rule, const GroupedIntMutView& out);

}  // namespace lowbit
