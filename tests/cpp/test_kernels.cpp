// Every ISA variant of every dispatched kernel against the scalar reference, bit for bit,
// on tail sizes and adversarial values. Unsupported ISAs are skipped, never passed.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/kernels.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

class GridKernelIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported on this CPU/build";
  }
};

std::vector<std::vector<float>> adversarial(i64 n) {
  std::vector<std::vector<float>> cases;
  cases.push_back(test_data::uniform_data(n, 1));
  cases.push_back(std::vector<float>(static_cast<std::size_t>(n), 0.0f));
  cases.push_back(std::vector<float>(static_cast<std::size_t>(n), -3.25f));
  std::vector<float> huge = test_data::uniform_data(n, 2, -3e38f, 3e38f);
  cases.push_back(huge);
  std::vector<float> tiny = test_data::uniform_data(n, 3, -1e-40f, 1e-40f);
  cases.push_back(tiny);
  std::vector<float> ties(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) ties[i] = 0.5f * static_cast<float>(i % 9) - 2.0f;  // exact .5 ties
  cases.push_back(ties);
  return cases;
}

}  // namespace

TEST_P(GridKernelIsa, RangeMatchesScalar) {
  const GridKernels& ref = scalar::kGridKernels;
  const GridKernels& k = grid_kernels(GetParam());
  for (i64 n : test_data::tail_sizes())
    for (const auto& x : adversarial(n)) {
      float lo0, hi0, lo1, hi1;
      const bool f0 = ref.range(x.data(), n, &lo0, &hi0);
      const bool f1 = k.range(x.data(), n, &lo1, &hi1);
      EXPECT_EQ(f0, f1);
      EXPECT_EQ(lo0, lo1) << "n=" << n;
      EXPECT_EQ(hi0, hi1) << "n=" << n;
    }
}

TEST_P(GridKernelIsa, RangeReportsNonFiniteAnywhere) {
  const GridKernels& k = grid_kernels(GetParam());
  for (i64 n : test_data::tail_sizes())
    for (float bad : {NAN, INFINITY, -INFINITY})
      for (i64 pos : {i64{0}, n / 2, n - 1}) {
        std::vector<float> x = test_data::uniform_data(n, 5);
        x[pos] = bad;
        float lo, hi;
        EXPECT_FALSE(k.range(x.data(), n, &lo, &hi)) << "n=" << n << " pos=" << pos;
      }
}

TEST_P(GridKernelIsa, QuantizeAndDequantizeMatchScalarBitForBit) {
  const GridKernels& ref = scalar::kGridKernels;
  const GridKernels& k = grid_kernels(GetParam());
  for (i64 n : test_data::tail_sizes())
    for (const auto& x : adversarial(n))
      for (int bits : {2, 3, 4, 8})
        for (float scale : {0.5f, 0.1f, 3e37f, FLT_MIN})
          for (float zero : {0.0f, static_cast<float>(1 << (bits - 1))}) {
            const int maxq = (1 << bits) - 1;
            std::vector<std::uint8_t> c0(static_cast<std::size_t>(n)), c1(c0.size());
            ref.quantize_codes(x.data(), n, scale, zero, maxq, c0.data());
            k.quantize_codes(x.data(), n, scale, zero, maxq, c1.data());
            ASSERT_EQ(c0, c1) << "n=" << n << " bits=" << bits << " scale=" << scale;
            std::vector<float> y0(c0.size()), y1(c0.size());
            ref.dequantize_codes(c0.data(), n, scale, zero, y0.data());
            k.dequantize_codes(c0.data(), n, scale, zero, y1.data());
            ASSERT_EQ(0, std::memcmp(y0.data(), y1.data(), y0.size() * 4)) << "n=" << n;
          }
}

INSTANTIATE_TEST_SUITE_P(Isas, GridKernelIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

TEST(GridKernelsScalar, RoundsHalfToEvenAndClamps) {
  const float x[6] = {0.5f, 1.5f, 2.5f, -0.5f, 100.0f, -100.0f};
  std::uint8_t c[6];
  scalar::kGridKernels.quantize_codes(x, 6, 1.0f, 8.0f, 15, c);
  EXPECT_EQ(c[0], 8);   // 0.5 -> 0 (even) + 8
  EXPECT_EQ(c[1], 10);  // 1.5 -> 2
  EXPECT_EQ(c[2], 10);  // 2.5 -> 2
  EXPECT_EQ(c[3], 8);   // -0.5 -> -0
  EXPECT_EQ(c[4], 15);  // clamped to maxq
  EXPECT_EQ(c[5], 0);   // clamped to 0
}

TEST(Dispatch, ActiveIsaIsSupportedAndForceable) {
  EXPECT_TRUE(isa_supported(active_isa()));
  const Isa before = active_isa();
  force_isa(Isa::Scalar);
  EXPECT_EQ(active_isa(), Isa::Scalar);
  force_isa(before);
  if (!isa_supported(Isa::Avx512)) EXPECT_THROW(force_isa(Isa::Avx512), Unsupported);
  EXPECT_THROW(parse_isa("sse9"), InvalidArgument);
}
