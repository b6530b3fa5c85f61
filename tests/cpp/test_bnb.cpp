// bitsandbytes formats (bnb.hpp): code tables, nibble order, the midpoint rounding rule and its
// ties, blocks across the whole flattened tensor, double quantization, LLM.int8().
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lowbit/bnb.hpp"
#include "lowbit/parallel.hpp"
#include "test_helpers.hpp"

using namespace lowbit;
using namespace lowbit::bnb;

namespace {

std::vector<std::uint8_t> unpack(const std::vector<std::uint8_t>& packed, i64 n) {
  std::vector<std::uint8_t> q(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) q[i] = (i & 1) ? (packed[i / 2] & 0x0f) : (packed[i / 2] >> 4);
  return q;
}

float max_half_gap(const float* code, int n) {
  std::vector<float> c(code, code + n);
  std::sort(c.begin(), c.end());
  float g = 0.0f;
  for (int i = 0; i + 1 < n; ++i) g = std::max(g, c[i + 1] - c[i]);
  return g / 2.0f;
}

}  // namespace

TEST(Bnb, CodeTables) {
  const float* nf4 = code4(Code4::NF4);
  EXPECT_EQ(nf4[0], -1.0f);
  EXPECT_EQ(nf4[7], 0.0f);
  EXPECT_EQ(nf4[15], 1.0f);
  for (int i = 0; i < 15; ++i) EXPECT_LT(nf4[i], nf4[i + 1]);
  const float* fp4 = code4(Code4::FP4);
  EXPECT_EQ(fp4[3], 1.0f);    // raw 12 / 12
  EXPECT_EQ(fp4[11], -1.0f);  // sign bit set
  for (int i = 0; i < 8; ++i) EXPECT_EQ(fp4[i + 8], -fp4[i]);
  const auto& m = dynamic_map();
  ASSERT_EQ(m.size(), 256u);
  EXPECT_EQ(m[255], 1.0f);
  EXPECT_EQ(m[127], 0.0f);
  for (int i = 0; i < 255; ++i) EXPECT_LT(m[i], m[i + 1]);
}

TEST(Bnb, NibbleOrderAndOddPadding) {
  const float x[3] = {1.0f, -1.0f, 0.0f};
  std::vector<std::uint8_t> packed(2);
  float absmax = 0;
  quantize4(x, 3, Code4::NF4, 64, packed.data(), &absmax);
  EXPECT_EQ(packed[0], 0xF0);  // first element (code 15) in the high nibble
  EXPECT_EQ(packed[1], 0x77);  // 0.0 and the padding 0.0: code 7
  EXPECT_EQ(absmax, 1.0f);
}

TEST(Bnb, MidpointTiesTakeTheLowerCode) {
  for (Code4 t : {Code4::NF4, Code4::FP4}) {
    const float* c = code4(t);
    std::vector<int> order(16);
    for (int i = 0; i < 16; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return c[a] < c[b]; });
    std::vector<float> x = {1.0f};  // absmax 1: scaled values are the values themselves
    for (int k = 0; k < 15; ++k) x.push_back((c[order[k]] + c[order[k + 1]]) / 2.0f);
    for (int k = 0; k < 15; ++k) x.push_back(std::nextafter(x[1 + k], 2.0f));
    const i64 n = static_cast<i64>(x.size());
    std::vector<std::uint8_t> packed(static_cast<std::size_t>((n + 1) / 2));
    float absmax = 0;
    quantize4(x.data(), n, t, 64, packed.data(), &absmax);
    const auto q = unpack(packed, n);
    for (int k = 0; k < 15; ++k) {
      EXPECT_EQ(q[1 + k], order[k]) << "tie at midpoint " << k;
      EXPECT_EQ(q[16 + k], order[k + 1]) << "one ulp above midpoint " << k;
    }
  }
}

TEST(Bnb, RoundTripBoundAndThreadInvariance) {
  for (Code4 t : {Code4::NF4, Code4::FP4})
    for (i64 bs : {32, 64, 4096})
      for (i64 n : {1, 63, 64, 65, 1001, 20000}) {
        const std::vector<float> x = test_data::uniform_data(n, static_cast<std::uint64_t>(n * 7 + bs), -3.0f, 3.0f);
        const i64 nb = (n + bs - 1) / bs;
        std::vector<std::uint8_t> p1(static_cast<std::size_t>((n + 1) / 2)), p2(p1.size());
        std::vector<float> a1(static_cast<std::size_t>(nb)), a2(a1.size()), y(x.size());
        set_num_threads(1);
        quantize4(x.data(), n, t, bs, p1.data(), a1.data());
        set_num_threads(2);
        quantize4(x.data(), n, t, bs, p2.data(), a2.data());
        set_num_threads(0);
        EXPECT_EQ(p1, p2);
        EXPECT_EQ(a1, a2);
        dequantize4(p1.data(), a1.data(), n, t, bs, y.data());
        const float half = max_half_gap(code4(t), 16);
        for (i64 i = 0; i < n; ++i)
          ASSERT_LE(std::fabs(y[i] - x[i]), half * a1[i / bs] * 1.000001f) << "n=" << n << " i=" << i;
      }
}

TEST(Bnb, BadInputs) {
  std::vector<float> x(64, 1.0f);
  std::vector<std::uint8_t> p(32);
  std::vector<float> a(2);
  for (i64 bs : {0, 16, 48, 8192}) EXPECT_THROW(quantize4(x.data(), 64, Code4::NF4, bs, p.data(), a.data()), InvalidArgument);
  EXPECT_THROW(quantize4(x.data(), 0, Code4::NF4, 64, p.data(), a.data()), InvalidArgument);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize4(x.data(), 64, Code4::NF4, 64, p.data(), a.data()), InvalidArgument);
  x[5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(int8_rowwise_quantize(x.data(), 1, 64, reinterpret_cast<std::int8_t*>(p.data()), a.data()),
               InvalidArgument);
}

TEST(Bnb, DoubleQuantizationRestoresTheAbsmax) {
  const i64 n = 600;
  std::vector<float> absmax = test_data::uniform_data(n, 11, 0.01f, 2.0f);
  std::vector<std::uint8_t> q(n);
  std::vector<float> a2(3), back(n);
  const float offset = double_quantize(absmax.data(), n, 256, q.data(), a2.data());
  double mean = 0;
  for (float v : absmax) mean += v;
  EXPECT_FLOAT_EQ(offset, static_cast<float>(mean / n));
  dequantize_blockwise8(q.data(), a2.data(), dynamic_map().data(), n, 256, offset, back.data());
  const float half = max_half_gap(dynamic_map().data(), 256);
  for (i64 i = 0; i < n; ++i) EXPECT_LE(std::fabs(back[i] - absmax[i]), half * a2[i / 256] * 1.0001f + 1e-7f);
}

TEST(Bnb, Int8LinearWithoutOutliersIsTheScaledIntegerProduct) {
  const i64 m = 3, k = 37, n = 5;
  const std::vector<float> W = test_data::uniform_data(n * k, 3, -0.5f, 0.5f);
  std::vector<float> X = test_data::uniform_data(m * k, 4, -2.0f, 2.0f);
  std::vector<std::int8_t> CB(n * k);
  std::vector<float> SCB(n), y(m * n);
  int8_rowwise_quantize(W.data(), n, k, CB.data(), SCB.data());
  // all |x| < 6: no decomposition; the product equals the integer dot product rescaled
  const Int8LinearStats st = int8_linear(X.data(), m, k, CB.data(), SCB.data(), n, 6.0f, nullptr, y.data());
  EXPECT_EQ(st.outlier_columns, 0);
  for (i64 r = 0; r < m; ++r) {
    float rowmax = 0;
    for (i64 c = 0; c < k; ++c) rowmax = std::max(rowmax, std::fabs(X[r * k + c]));
    for (i64 o = 0; o < n; ++o) {
      std::int32_t acc = 0;
      for (i64 c = 0; c < k; ++c)
        acc += static_cast<std::int32_t>(std::nearbyint(X[r * k + c] * ((1.0f / rowmax) * 127.0f))) * CB[o * k + c];
      EXPECT_EQ(y[r * n + o], static_cast<float>(acc) * (rowmax * SCB[o]) * 6.200124e-05f);
    }
  }
  X[4] = 7.0f;  // column 4 becomes an outlier column
  EXPECT_EQ(int8_linear(X.data(), m, k, CB.data(), SCB.data(), n, 6.0f, nullptr, y.data()).outlier_columns, 1);
  EXPECT_EQ(int8_linear(X.data(), m, k, CB.data(), SCB.data(), n, 0.0f, nullptr, y.data()).outlier_columns, 0);
}
