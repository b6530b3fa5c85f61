// ggml block formats: layouts pinned by the file format, and round-trip bounds that follow
// from each format's arithmetic. Byte-exactness against llama.cpp is tested in Python
// (tests/python/test_ggml_formats.py: golden bytes + live llama-cpp-python).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include "lowbit/format_table.hpp"
#include "lowbit/ggml_blocks.hpp"
#include "lowbit/half.hpp"
#include "test_helpers.hpp"

using namespace lowbit;
using namespace lowbit::ggml;

TEST(GgmlBlocks, FieldOffsetsAsInGgmlCommon) {
  EXPECT_EQ(offsetof(block_q4_1, qs), 4u);
  EXPECT_EQ(offsetof(block_q5_0, qh), 2u);
  EXPECT_EQ(offsetof(block_q5_0, qs), 6u);
  EXPECT_EQ(offsetof(block_q5_1, qs), 8u);
  EXPECT_EQ(offsetof(block_q8_1, qs), 4u);
  EXPECT_EQ(offsetof(block_q2_K, qs), 16u);
  EXPECT_EQ(offsetof(block_q2_K, d), 80u);
  EXPECT_EQ(offsetof(block_q3_K, qs), 32u);
  EXPECT_EQ(offsetof(block_q3_K, scales), 96u);
  EXPECT_EQ(offsetof(block_q3_K, d), 108u);
  EXPECT_EQ(offsetof(block_q4_K, scales), 4u);
  EXPECT_EQ(offsetof(block_q4_K, qs), 16u);
  EXPECT_EQ(offsetof(block_q5_K, qh), 16u);
  EXPECT_EQ(offsetof(block_q5_K, qs), 48u);
  EXPECT_EQ(offsetof(block_q6_K, qh), 128u);
  EXPECT_EQ(offsetof(block_q6_K, scales), 192u);
  EXPECT_EQ(offsetof(block_q6_K, d), 208u);
  EXPECT_EQ(offsetof(block_q8_K, bsums), 260u);
}

TEST(GgmlBlocks, TableRowsMatchTheStructs) {
  struct Row {
    QType t;
    int id, block, size;
  };
  const Row rows[] = {{QType::Q4_0, 2, 32, sizeof(block_q4_0)},   {QType::Q4_1, 3, 32, sizeof(block_q4_1)},
                      {QType::Q5_0, 6, 32, sizeof(block_q5_0)},   {QType::Q5_1, 7, 32, sizeof(block_q5_1)},
                      {QType::Q8_0, 8, 32, sizeof(block_q8_0)},   {QType::Q8_1, 9, 32, sizeof(block_q8_1)},
                      {QType::Q2_K, 10, 256, sizeof(block_q2_K)}, {QType::Q3_K, 11, 256, sizeof(block_q3_K)},
                      {QType::Q4_K, 12, 256, sizeof(block_q4_K)}, {QType::Q5_K, 13, 256, sizeof(block_q5_K)},
                      {QType::Q6_K, 14, 256, sizeof(block_q6_K)}, {QType::Q8_K, 15, 256, sizeof(block_q8_K)},
                      {QType::IQ4_NL, 20, 32, sizeof(block_iq4_nl)}};
  for (const Row& r : rows) {
    const QTypeTraits& t = traits(r.t);
    EXPECT_EQ(static_cast<int>(t.type), r.id) << t.name;
    EXPECT_EQ(t.block_size, r.block) << t.name;
    EXPECT_EQ(t.type_size, r.size) << t.name;
    EXPECT_TRUE(t.is_quantized && !t.needs_group_params && !t.partial_block_ok) << t.name;
  }
}

namespace {

std::vector<float> roundtrip(QType t, const std::vector<float>& x, std::vector<std::uint8_t>& bytes) {
  const i64 n = static_cast<i64>(x.size());
  bytes.assign(static_cast<std::size_t>(row_size(t, n)) + 1, 0xAB);
  std::vector<float> y(x.size());
  traits(t).from_float_ref(x.data(), bytes.data(), n, nullptr);
  EXPECT_EQ(bytes.back(), 0xAB) << traits(t).name << " wrote past its row";
  traits(t).to_float_ref(bytes.data(), y.data(), n, nullptr);
  return y;
}

std::vector<float> test_row(i64 n, std::uint64_t seed) {
  std::vector<float> x = test_data::uniform_data(n, seed, -1.0f, 1.0f);
  for (i64 i = 0; i < n; ++i) x[i] *= 1.0f + 3.0f * static_cast<float>(i % 7 == 0);  // outliers
  for (i64 i = 64; i < 96 && i < n; ++i) x[i] = 0.0f;                               // a zero block
  return x;
}

// Largest |x| of the block holding element i.
float block_amax(const std::vector<float>& x, std::size_t i, std::size_t qk) {
  float a = 0;
  for (std::size_t j = i / qk * qk; j < (i / qk + 1) * qk; ++j) a = std::max(a, std::fabs(x[j]));
  return a;
}

constexpr float kHalfUlp16 = 1.0f / 2048;  // relative rounding of an fp16 scale

}  // namespace

// Legacy quants: half a step (plus the fp16 rounding of the scale times the largest code),
// except Q4_0/Q5_0 clip the far side of the signed absmax by one more step.
TEST(GgmlLegacy, RoundTripWithinHalfAStep) {
  struct Case {
    QType t;
    float levels;  // steps across the block range
    float slack;   // extra steps allowed (clipping of the positive extreme)
  };
  for (const Case c : {Case{QType::Q4_0, 16, 0.5f}, Case{QType::Q5_0, 32, 0.5f}, Case{QType::Q8_0, 254, 0},
                       Case{QType::Q8_1, 254, 0}, Case{QType::Q4_1, 15, 0}, Case{QType::Q5_1, 31, 0}}) {
    const std::vector<float> x = test_row(512, 11);
    std::vector<std::uint8_t> bytes;
    const std::vector<float> y = roundtrip(c.t, x, bytes);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float range = 2 * block_amax(x, i, 32);  // >= max - min of the block
      const float step = range / c.levels;
      const float bound = step * (0.5f + c.slack) + range * 2 * kHalfUlp16 + 1e-7f;
      EXPECT_LE(std::fabs(y[i] - x[i]), bound) << traits(c.t).name << " i=" << i;
    }
    // zero blocks stay exactly zero (the symmetric types)
    if (c.t != QType::Q4_1 && c.t != QType::Q5_1)
      for (std::size_t i = 64; i < 96; ++i) EXPECT_EQ(y[i], 0.0f) << traits(c.t).name;
  }
}

// K-quants: after the scale search the codes are requantized by nearest rounding against the
// stored scales, so every element lands within half a sub-block step of x, or on the clamped
// end of the sub-block's grid. Check it from the decoded values: the step of a sub-block is
// the gcd-like spacing of its levels, recovered from two decoded codes.
TEST(GgmlKQuants, RoundTripIsNearestOnEachSubBlockGrid) {
  struct Case {
    QType t;
    int sub;    // sub-block length
    int codes;  // levels per sub-block
  };
  for (const Case c : {Case{QType::Q2_K, 16, 4}, Case{QType::Q3_K, 16, 8}, Case{QType::Q4_K, 32, 16},
                       Case{QType::Q5_K, 32, 32}, Case{QType::Q6_K, 16, 64}, Case{QType::Q8_K, 256, 255}}) {
    const std::vector<float> x = test_row(1024, 12);
    std::vector<std::uint8_t> bytes;
    const std::vector<float> y = roundtrip(c.t, x, bytes);
    double err2 = 0, sig2 = 0;
    for (std::size_t s = 0; s < x.size(); s += static_cast<std::size_t>(c.sub)) {
      // the grid of this sub-block: lo + step*k, k = 0..codes-1, with lo/step from the decoded
      // values (their min and the smallest non-zero gap)
      float lo = y[s], hi = y[s], gap = INFINITY;
      for (int i = 0; i < c.sub; ++i) lo = std::min(lo, y[s + i]), hi = std::max(hi, y[s + i]);
      for (int i = 0; i < c.sub; ++i)
        for (int k = 0; k < c.sub; ++k) {
          const float g = std::fabs(y[s + i] - y[s + k]);
          if (g > 1e-12f * (std::fabs(lo) + std::fabs(hi))) gap = std::min(gap, g);
        }
      for (int i = 0; i < c.sub; ++i) {
        const float xi = x[s + i], yi = y[s + i];
        err2 += static_cast<double>(xi - yi) * (xi - yi);
        sig2 += static_cast<double>(xi) * xi;
        if (!std::isfinite(gap)) continue;  // one level used: nothing to compare
        const float tol = gap * 0.5f * (1 + 1e-4f) + 1e-6f;
        if (xi > hi + tol || xi < lo - tol) continue;  // clamped at the grid's end (checked below)
        EXPECT_LE(std::fabs(xi - yi), tol) << traits(c.t).name << " element " << s + i;
      }
    }
    // the searches must do better than a coarse grid: SQNR floors by bits
    const double sqnr = 10 * std::log10(sig2 / err2);
    const double floor_db = c.t == QType::Q2_K ? 8 : c.t == QType::Q3_K ? 13 : c.t == QType::Q4_K ? 19
                          : c.t == QType::Q5_K ? 25 : c.t == QType::Q6_K ? 31 : 40;
    EXPECT_GT(sqnr, floor_db) << traits(c.t).name;
  }
}

TEST(GgmlKQuants, AllZeroAndConstantSuperBlocks) {
  for (QType t : {QType::Q2_K, QType::Q3_K, QType::Q4_K, QType::Q5_K, QType::Q6_K, QType::Q8_K, QType::Q4_0,
                  QType::Q4_1, QType::Q5_0, QType::Q5_1, QType::Q8_0, QType::IQ4_NL}) {
    std::vector<std::uint8_t> bytes;
    const std::vector<float> zeros(512, 0.0f);
    for (float v : roundtrip(t, zeros, bytes)) EXPECT_EQ(v, 0.0f) << traits(t).name;
    const std::vector<float> c(512, 0.75f);  // 0.75 = 3/4: exact in every scale chain
    for (float v : roundtrip(t, c, bytes)) EXPECT_NEAR(v, 0.75f, 0.75f * 0.02f) << traits(t).name;
  }
}

#include "../../cpp/src/formats/ggml_numerics.hpp"

// ggml's branch-free float->half equals lowbit's reference conversion on every non-NaN input
// (a dense sweep of all exponents with boundary mantissas), and maps NaN to sign|0x7e00.
TEST(GgmlNumerics, BranchFreeHalfMatchesTheReference) {
  for (std::uint64_t u = 0; u <= 0xffffffffull; u += 997) {
    for (std::uint32_t tweak : {0u, 1u, 0x0fffu, 0x1000u, 0x1001u, 0x1fffu}) {
      const std::uint32_t b = static_cast<std::uint32_t>(u) ^ tweak;
      const float f = bits_float(b);
      if (std::isnan(f))
        EXPECT_EQ(ggml::fp32_to_half(f), static_cast<std::uint16_t>(((b >> 16) & 0x8000u) | 0x7e00u));
      else
        ASSERT_EQ(ggml::fp32_to_half(f), fp32_to_fp16(f)) << std::hex << b;
    }
  }
  EXPECT_EQ(ggml::nearest_int(2.5f), 2);  // half to even
  EXPECT_EQ(ggml::nearest_int(-3.5f), -4);
  EXPECT_EQ(ggml::cvtt_i8(8.9f + 8.5f), 17);
  EXPECT_EQ(ggml::cvtt_i8(NAN), 0);  // cvttss2si's INT32_MIN, low byte
}
