// FP8 conversions against a brute-force nearest-code search, the boundary cases of both
// encodings, and the scaled FP8 / int8 per-channel / tinygemm quantizers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/format_table.hpp"
#include "lowbit/fp8.hpp"
#include "lowbit/half.hpp"
#include "lowbit/int8_channel.hpp"
#include "lowbit/tinygemm.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

bool is_nan_code(Fp8Kind k, int b) { return std::isnan(fp8_to_fp32(k, static_cast<std::uint8_t>(b))); }

// The definition, by search: the finite code nearest to clamp(x, -max, max); a tie goes to
// the code with an even mantissa (even byte). NaN -> the NaN code with x's sign.
std::uint8_t nearest_code(Fp8Kind k, float x) {
  const Fp8Spec s = fp8_spec(k);
  const bool neg = std::signbit(x);
  if (std::isnan(x)) return static_cast<std::uint8_t>((neg ? 0x80 : 0) | s.nan_code);
  const double a = std::min(std::fabs(static_cast<double>(x)), static_cast<double>(s.max_value));
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int b = 0; b <= s.max_code; ++b) {
    const double d = std::fabs(static_cast<double>(fp8_to_fp32(k, static_cast<std::uint8_t>(b))) - a);
    if (d < best_d || (d == best_d && (b & 1) == 0)) {
      best = b;
      best_d = d;
    }
  }
  return static_cast<std::uint8_t>((neg ? 0x80 : 0) | best);
}

}  // namespace

TEST(Fp8, DecodesTheBoundaryValues) {
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E4M3>(0x7e), 448.0f);
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E4M3>(0xfe), -448.0f);
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E4M3>(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E4M3>(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E4M3>(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(fp8_to_fp32<Fp8Kind::E4M3>(0x7f)));
  EXPECT_TRUE(std::isnan(fp8_to_fp32<Fp8Kind::E4M3>(0xff)));
  EXPECT_TRUE(std::signbit(fp8_to_fp32<Fp8Kind::E4M3>(0x80)));
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E5M2>(0x7b), 57344.0f);
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E5M2>(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E5M2>(0x04), std::ldexp(1.0f, -14));
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E5M2>(0x7c), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp8_to_fp32<Fp8Kind::E5M2>(0xfc), -std::numeric_limits<float>::infinity());
  for (int b : {0x7d, 0x7e, 0x7f}) EXPECT_TRUE(std::isnan(fp8_to_fp32<Fp8Kind::E5M2>(static_cast<std::uint8_t>(b))));
  // exactly one NaN pattern per sign in E4M3, three in E5M2
  int nan4 = 0, nan5 = 0;
  for (int b = 0; b < 256; ++b) nan4 += is_nan_code(Fp8Kind::E4M3, b), nan5 += is_nan_code(Fp8Kind::E5M2, b);
  EXPECT_EQ(nan4, 2);
  EXPECT_EQ(nan5, 6);
}

TEST(Fp8, EveryFiniteCodeRoundTrips) {
  for (Fp8Kind k : {Fp8Kind::E4M3, Fp8Kind::E5M2})
    for (int b = 0; b < 256; ++b) {
      const float v = fp8_to_fp32(k, static_cast<std::uint8_t>(b));
      if (!std::isfinite(v)) continue;
      EXPECT_EQ(fp32_to_fp8(k, v), b) << "kind " << int(k) << " code " << b;
    }
}

TEST(Fp8, SaturatesAndKeepsNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(464.0f), 0x7e);  // tie between 448 and (missing) 480
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(480.0f), 0x7e);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(1e30f), 0x7e);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(inf), 0x7e);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(-inf), 0xfe);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(std::numeric_limits<float>::max()), 0x7e);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(std::nanf("")), 0x7f);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(-std::nanf("")), 0xff);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E5M2>(61440.0f), 0x7b);  // tie 57344 / 65536 (inf): saturates
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E5M2>(inf), 0x7b);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E5M2>(-inf), 0xfb);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E5M2>(std::nanf("")), 0x7e);
}

TEST(Fp8, RoundsHalfwayToEvenInEveryBinade) {
  for (Fp8Kind k : {Fp8Kind::E4M3, Fp8Kind::E5M2}) {
    const Fp8Spec s = fp8_spec(k);
    for (int b = 0; b < s.max_code; ++b) {
      const float lo = fp8_to_fp32(k, static_cast<std::uint8_t>(b));
      const float hi = fp8_to_fp32(k, static_cast<std::uint8_t>(b + 1));
      const float mid = 0.5f * (lo + hi);  // exact: fewer than 24 significant bits
      const int even = (b & 1) ? b + 1 : b;
      EXPECT_EQ(fp32_to_fp8(k, mid), even) << "between codes " << b << " and " << b + 1;
      EXPECT_EQ(fp32_to_fp8(k, -mid), 0x80 | even);
      EXPECT_EQ(fp32_to_fp8(k, std::nextafter(mid, 0.0f)), b);
      EXPECT_EQ(fp32_to_fp8(k, std::nextafter(mid, hi)), b + 1);
    }
  }
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(std::ldexp(1.0f, -10)), 0x00);  // half the smallest subnormal
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(std::ldexp(1.0f, -149)), 0x00);
  EXPECT_EQ(fp32_to_fp8<Fp8Kind::E4M3>(-0.0f), 0x80);
}

TEST(Fp8, MatchesTheNearestCodeOnASweepOfFloat32) {
  // every 40503rd float32 bit pattern (both signs, all exponents, NaNs included)
  for (Fp8Kind k : {Fp8Kind::E4M3, Fp8Kind::E5M2})
    for (std::uint64_t u = 0; u < (1ull << 32); u += 40503) {
      const float x = bits_float(static_cast<std::uint32_t>(u));
      ASSERT_EQ(fp32_to_fp8(k, x), nearest_code(k, x)) << "kind " << int(k) << " x=" << x << " bits " << u;
    }
}

TEST(Fp8Quantize, BlockTilesMayBePartialAndZeroTilesAreExact) {
  const i64 rows = 5, cols = 7;
  std::vector<float> w = test_data::uniform_data(rows * cols, 3, -2.0f, 2.0f);
  for (i64 r = 3; r < 5; ++r)
    for (i64 c = 4; c < 7; ++c) w[static_cast<std::size_t>(r * cols + c)] = 0.0f;  // tile (1, 1) is zero
  Fp8Params p;
  p.strategy = Fp8Strategy::Block;
  p.block_rows = 3;
  p.block_cols = 4;
  const Fp8Shape s = fp8_output_shape(rows, cols, p);
  ASSERT_EQ(s.scale_rows(), 2);
  ASSERT_EQ(s.scale_cols(), 2);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(rows * cols));
  std::vector<float> scales(4), y(static_cast<std::size_t>(rows * cols));
  fp8_quantize(AnyMatrixView(w.data(), rows, cols), p, codes.data(), scales.data());
  EXPECT_EQ(scales[3], 0.0f);
  fp8_dequantize(s, Fp8Kind::E4M3, codes.data(), scales.data(), y.data());
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) {
      const float x = w[static_cast<std::size_t>(r * cols + c)];
      const float sc = scales[static_cast<std::size_t>((r / 3) * 2 + c / 4)];
      // relative 2^-4 in the normal range, half the smallest subnormal step below it
      EXPECT_LE(std::fabs(y[static_cast<std::size_t>(r * cols + c)] - x),
                std::max(std::fabs(x) / 16.0f, sc * std::ldexp(1.0f, -10)) * 1.0001f);
    }
}

TEST(Fp8Quantize, RejectsNonFiniteWeightsAndBadBlocks) {
  std::vector<float> w(12, 1.0f);
  w[7] = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::uint8_t> codes(12);
  std::vector<float> scales(12);
  EXPECT_THROW(fp8_quantize(AnyMatrixView(w.data(), 3, 4), Fp8Params{}, codes.data(), scales.data()),
               InvalidArgument);
  Fp8Params p;
  p.strategy = Fp8Strategy::Block;
  p.block_rows = 0;
  EXPECT_THROW(fp8_output_shape(3, 4, p), InvalidArgument);
  EXPECT_THROW(fp8_output_shape(0, 4, Fp8Params{}), InvalidArgument);
}

TEST(Int8Channel, TorchaoAndEetqRules) {
  // one row: amax 2.55 -> torchao scale 0.02, eetq scale 2.55/128
  const std::vector<float> w = {2.55f, -2.55f, 0.01f, -0.03f, 1.0f};
  const GroupedIntShape s = int8_channel_output_shape(1, 5);
  std::vector<std::uint8_t> q(5), z(1);
  std::vector<float> sc(1);
  int8_channel_quantize(AnyMatrixView(w.data(), 1, 5), Int8ChannelRule::Torchao, {s, q.data(), sc.data(), z.data()});
  EXPECT_FLOAT_EQ(sc[0], 2.55f / 127.5f);
  EXPECT_EQ(z[0], 128);
  const float inv = 1.0f / sc[0];
  for (int i = 0; i < 5; ++i) {
    const float e = std::clamp(std::nearbyint(w[static_cast<std::size_t>(i)] * inv), -128.0f, 127.0f);
    EXPECT_EQ(static_cast<int>(q[static_cast<std::size_t>(i)]) - 128, static_cast<int>(e)) << i;
  }
  EXPECT_EQ(q[0], 255);  // 127.5 rounds to 128 (even) and is clamped to 127
  EXPECT_EQ(q[1], 0);    // -127.5 -> -128
  int8_channel_quantize(AnyMatrixView(w.data(), 1, 5), Int8ChannelRule::Eetq, {s, q.data(), sc.data(), z.data()});
  EXPECT_EQ(sc[0], 2.55f / 128.0f);
  EXPECT_EQ(q[0], 255);  // 128 -> clamped to 127
  EXPECT_EQ(q[1], 0);    // -128
  // all-zero row: torchao floors the scale at FLT_EPSILON, eetq keeps 0; codes are 0 either way
  const std::vector<float> zero(4, 0.0f);
  const GroupedIntShape s4 = int8_channel_output_shape(1, 4);
  for (Int8ChannelRule rule : {Int8ChannelRule::Torchao, Int8ChannelRule::Eetq}) {
    int8_channel_quantize(AnyMatrixView(zero.data(), 1, 4), rule, {s4, q.data(), sc.data(), z.data()});
    for (int i = 0; i < 4; ++i) EXPECT_EQ(q[static_cast<std::size_t>(i)], 128);
  }
}

TEST(Tinygemm, RoundTripWithinHalfAStepPlusBf16Rounding) {
  const i64 rows = 3, cols = 64, gs = 32;
  std::vector<float> w = test_data::uniform_data(rows * cols, 11, -1.0f, 3.0f);
  const TinygemmShape s = tinygemm_output_shape(rows, cols, gs);
  std::vector<std::uint8_t> q(static_cast<std::size_t>(rows * s.row_bytes()));
  std::vector<std::uint16_t> sc(static_cast<std::size_t>(rows * 2)), zp(sc.size());
  std::vector<float> y(w.size());
  tinygemm_quantize(AnyMatrixView(w.data(), rows, cols), gs, q.data(), sc.data(), zp.data());
  tinygemm_dequantize(s, q.data(), sc.data(), zp.data(), y.data());
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) {
      const std::size_t gi = static_cast<std::size_t>(r * 2 + c / gs);
      const float scale = bf16_to_fp32(sc[gi]), zero = bf16_to_fp32(zp[gi]);
      // grid {zero + (k - 8) * scale}: half a step, plus the bfloat16 roundings (2^-9 relative
      // each) of the zero, the scale and the grid origin, and the clipped ends (15 * scale may
      // fall 15 * 2^-9 * scale short of max - min): 2^-9 * (2 |zero| + 39 scale) in all
      const float bound = 0.5f * scale + (std::fabs(zero) + 20.0f * scale) * std::ldexp(1.0f, -8);
      EXPECT_LE(std::fabs(y[static_cast<std::size_t>(r * cols + c)] - w[static_cast<std::size_t>(r * cols + c)]),
                bound)
          << r << ", " << c;
    }
}

TEST(Tinygemm, RejectsGroupsThatDoNotDivideAndNonFinite) {
  EXPECT_THROW(tinygemm_output_shape(2, 96, 64), InvalidArgument);
  EXPECT_THROW(tinygemm_output_shape(2, 64, 0), InvalidArgument);
  std::vector<float> w(64, 1.0f);
  w[5] = std::numeric_limits<float>::infinity();
  std::vector<std::uint8_t> q(32);
  std::vector<std::uint16_t> sc(2), zp(2);
  EXPECT_THROW(tinygemm_quantize(AnyMatrixView(w.data(), 1, 64), 32, q.data(), sc.data(), zp.data()),
               InvalidArgument);
}

TEST(Tinygemm, TableRowReadsFloatZeroPoints) {
  // the format-table row with GroupParams::float_zeros is the layout's dequantization
  const QTypeTraits& t = traits(QType::INT4_TINYGEMM);
  const std::vector<float> x = test_data::uniform_data(40, 5, -1.0f, 2.0f);
  const float scales[2] = {0.2f, 0.125f};
  const float zeros[2] = {0.5f, 1.25f};
  GroupParams p;
  p.scales = scales;
  p.group_size = 32;
  p.float_zeros = zeros;
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(row_size(t.type, 40)));
  std::vector<float> y(40);
  t.from_float_ref(x.data(), bytes.data(), 40, &p);
  t.to_float_ref(bytes.data(), y.data(), 40, &p);
  for (int i = 0; i < 40; ++i) {
    const int g = i / 32;
    const float q = std::clamp(std::nearbyint((x[static_cast<std::size_t>(i)] - (zeros[g] - 8 * scales[g])) / scales[g]),
                               0.0f, 15.0f);
    EXPECT_EQ(y[static_cast<std::size_t>(i)], (q - 8.0f) * scales[g] + zeros[g]) << i;
  }
  p.float_zeros = nullptr;  // neither float nor integer zero points: a clear error
  EXPECT_THROW(t.from_float_ref(x.data(), bytes.data(), 40, &p), InvalidArgument);
}
