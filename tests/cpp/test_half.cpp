// fp16/bf16 conversions: exhaustive over all 65536 half/bfloat16 bit patterns (round trip),
// and rounding ties / overflow / subnormals checked against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "lowbit/half.hpp"

using namespace lowbit;

TEST(Half, EveryFp16RoundTripsThroughFloat) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<std::uint16_t>(h));
    const std::uint16_t back = fp32_to_fp16(f);
    if (std::isnan(f)) {
      EXPECT_EQ(back & 0x7c00u, 0x7c00u) << h;
      EXPECT_NE(back & 0x3ffu, 0u) << h;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << h;
    } else {
      EXPECT_EQ(back, h) << "half bits " << h;
    }
  }
}

TEST(Half, Fp16KnownValues) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);              // max half
  EXPECT_EQ(fp32_to_fp16(65519.99f), 0x7bff);             // below the rounding midpoint
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);              // tie rounds to even: inf
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: 0
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);  // above the tie
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp tie -> even (2)
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie -> even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
}

TEST(Half, EveryBf16RoundTripsThroughFloat) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_fp32(static_cast<std::uint16_t>(b));
    const std::uint16_t back = fp32_to_bf16(f);
    if (std::isnan(f)) {
      EXPECT_EQ(back, (b & 0x8000u) | 0x7fc0u) << b;
    } else {
      EXPECT_EQ(back, b) << b;
    }
  }
}

TEST(Half, Bf16RoundsHalfToEven) {
  // 1 + 2^-8 is exactly halfway between bf16 1.0 (0x3f80) and 1.0078125 (0x3f81): even wins.
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(fp32_to_bf16(3.3895314e38f), 0x7f7f);  // max bf16 stays finite
  EXPECT_EQ(fp32_to_bf16(3.4028235e38f), 0x7f80);  // FLT_MAX rounds up to inf
}
