// ggml's quantized block layouts (GGUF tensor data), byte for byte.
//
// Field order and sizes as in ggml-common.h (REFERENCE.md §5.2); all little-endian, no
// padding. `half` fields hold IEEE binary16 bits. The static_asserts pin the sizes that are
// written into .gguf files.
#pragma once

#include <cstdint>

namespace lowbit::ggml {

using half = std::uint16_t;

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32, QK4_NL = 32;
constexpr int QK_K = 256;           // super-block of the k-quants
constexpr int K_SCALE_SIZE = 12;    // packed 6-bit scales/mins of Q4_K/Q5_K, 6-bit scales of Q3_K

struct block_q4_0 {
  half d;
  std::uint8_t qs[QK4_0 / 2];  // element j in the low nibble of qs[j], j+16 in the high one
};
struct block_q4_1 {
  half d, m;
  std::uint8_t qs[QK4_1 / 2];
};
struct block_q5_0 {
  half d;
  std::uint8_t qh[4];  // bit 4 of element j at bit j of this little-endian u32
  std::uint8_t qs[QK5_0 / 2];
};
struct block_q5_1 {
  half d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[QK5_1 / 2];
};
struct block_q8_0 {
  half d;
  std::int8_t qs[QK8_0];
};
struct block_q8_1 {
  half d, s;  // s = d * sum(qs)
  std::int8_t qs[QK8_1];
};
struct block_q2_K {
  std::uint8_t scales[QK_K / 16];  // 4-bit scale | 4-bit min << 4, per 16 elements
  std::uint8_t qs[QK_K / 4];
  half d, dmin;
};
struct block_q3_K {
  std::uint8_t hmask[QK_K / 8];
  std::uint8_t qs[QK_K / 4];
  std::uint8_t scales[K_SCALE_SIZE];
  half d;
};
struct block_q4_K {
  half d, dmin;
  std::uint8_t scales[K_SCALE_SIZE];
  std::uint8_t qs[QK_K / 2];
};
struct block_q5_K {
  half d, dmin;
  std::uint8_t scales[K_SCALE_SIZE];
  std::uint8_t qh[QK_K / 8];
  std::uint8_t qs[QK_K / 2];
};
struct block_q6_K {
  std::uint8_t ql[QK_K / 2];
  std::uint8_t qh[QK_K / 4];
  std::int8_t scales[QK_K / 16];
  half d;
};
struct block_q8_K {
  float d;
  std::int8_t qs[QK_K];
  std::int16_t bsums[QK_K / 16];
};
struct block_iq4_nl {
  half d;
  std::uint8_t qs[QK4_NL / 2];
};

static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 layout");
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 layout");
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 layout");
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 layout");
static_assert(sizeof(block_q2_K) == 84, "block_q2_K layout");
static_assert(sizeof(block_q3_K) == 110, "block_q3_K layout");
static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");
static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");
static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");
static_assert(sizeof(block_q8_K) == 292, "block_q8_K layout");
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl layout");

// The 16 non-linear levels of IQ4_NL (and IQ4_XS), ascending.
constexpr std::int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                           1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace lowbit::ggml
