// Quantized matmul, per ISA: the properties that do not depend on float summation order
// (thread-count and batch invariance, non-finite and extreme inputs), in C++ so that they
// also run where the Python module is not built (the aarch64 build under qemu,
// scripts/check_arm.sh); and the two NEON tables (baseline, dotprod) against each other.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/grouped_int.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/qmatmul.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

class QMatmulInvariance : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported on this CPU/build";
  }
  void TearDown() override { set_num_threads(0); }
};

// A random grouped-int weight (act_order: a scrambled g_idx), prepared for the kernels.
std::shared_ptr<PackedWeights> packed(int bits, i64 rows, i64 cols, i64 group_size, bool act_order,
                                      std::uint64_t seed) {
  const GroupedIntShape sh = make_grouped_shape(bits, rows, cols, group_size);
  const i64 G = sh.n_groups(), maxq = sh.maxq();
  std::vector<std::uint8_t> qweight(static_cast<std::size_t>(rows * sh.row_bytes())), codes(static_cast<std::size_t>(cols));
  for (i64 r = 0; r < rows; ++r) {
    const auto u = test_data::uniform_data(cols, seed + static_cast<std::uint64_t>(r), 0.0f, 1.0f);
    for (i64 c = 0; c < cols; ++c)
      codes[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(std::min<i64>(maxq, static_cast<i64>(u[c] * (maxq + 1))));
    pack_codes(codes.data(), cols, bits, qweight.data() + r * sh.row_bytes());
  }
  const auto scales = test_data::uniform_data(rows * G, seed + 1000, 0.001f, 0.1f);
  const auto z = test_data::uniform_data(rows * G, seed + 2000, 0.0f, 1.0f);
  std::vector<std::uint8_t> zeros(static_cast<std::size_t>(rows * G));
  for (std::size_t i = 0; i < zeros.size(); ++i) zeros[i] = static_cast<std::uint8_t>(std::min<i64>(maxq, static_cast<i64>(z[i] * (maxq + 1))));
  std::vector<std::int32_t> g_idx;
  GroupedIntConstView v{sh, qweight.data(), scales.data(), zeros.data(), nullptr};
  if (act_order) {
    g_idx.resize(static_cast<std::size_t>(cols));
    for (i64 c = 0; c < cols; ++c) g_idx[static_cast<std::size_t>(c)] = static_cast<std::int32_t>((c * 7 + 3) % G);
    v.g_idx = g_idx.data();
  }
  return prepare_grouped(v);
}

std::vector<float> run(const QMatmulKernels& k, const PackedWeights& w, const float* x, i64 M, QActMode mode) {
  std::vector<float> y(static_cast<std::size_t>(M * w.rows));
  qmatmul(x, ActDType::F32, M, w.cols, w, mode, y.data(), k);
  return y;
}

bool same_bits(const std::vector<float>& a, const float* b, std::size_t n) {
  return a.size() >= n && std::memcmp(a.data(), b, n * sizeof(float)) == 0;
}

struct Shape {
  int bits;
  i64 rows, cols, group_size;
  bool act_order;
  QActMode mode;
};

// Several decode (32-row) and prefill (64 x 128) tiles, register-tile tails in both directions.
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      {4, 70, 200, 64, false, QActMode::Q8Block}, {3, 37, 130, 48, true, QActMode::Q8Block},
      {8, 37, 96, 32, false, QActMode::Q8Block},  {8, 37, 77, -1, false, QActMode::Q8Token},
      {4, 70, 200, 64, false, QActMode::F32}};
  return s;
}

}  // namespace

TEST_P(QMatmulInvariance, BitIdenticalForOneAndTwoThreads) {
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (const Shape& s : shapes()) {
    const auto w = packed(s.bits, s.rows, s.cols, s.group_size, s.act_order, 5);
    for (i64 M : {1, 8, 130}) {
      const auto x = test_data::uniform_data(M * s.cols, 9 + static_cast<std::uint64_t>(M), -2.0f, 2.0f);
      set_num_threads(1);
      const auto one = run(k, *w, x.data(), M, s.mode);
      set_num_threads(2);
      const auto two = run(k, *w, x.data(), M, s.mode);
      EXPECT_TRUE(same_bits(one, two.data(), one.size())) << "bits=" << s.bits << " M=" << M;
    }
  }
}

TEST_P(QMatmulInvariance, RowsGetTheSameBitsAloneOrInABatch) {
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (const Shape& s : shapes()) {
    if (s.mode == QActMode::F32) continue;  // the float GEMM's blocking depends on M
    const auto w = packed(s.bits, s.rows, s.cols, s.group_size, s.act_order, 7);
    const i64 M = 33, N = w->rows;
    const auto x = test_data::uniform_data(M * s.cols, 13, -2.0f, 2.0f);
    const auto batch = run(k, *w, x.data(), M, s.mode);
    for (i64 m = 0; m < M; ++m) {
      const auto alone = run(k, *w, x.data() + m * s.cols, 1, s.mode);
      EXPECT_TRUE(same_bits(alone, batch.data() + m * N, static_cast<std::size_t>(N))) << "bits=" << s.bits << " m=" << m;
    }
    const auto nine = run(k, *w, x.data(), 9, s.mode);
    EXPECT_TRUE(same_bits(nine, batch.data(), static_cast<std::size_t>(9 * N))) << "bits=" << s.bits;
  }
}

// Zero rows give exact zeros, a NaN or inf poisons exactly its own token, huge and subnormal
// rows stay within the summation bound of the scalar definition.
TEST_P(QMatmulInvariance, ZerosHugeSubnormalAndNonFiniteRows) {
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (int bits : {4, 8}) {
    const i64 cols = 100, M = 6;
    const auto w = packed(bits, 9, cols, 32, false, 17);
    auto x = test_data::uniform_data(M * cols, 19, -1.0f, 1.0f);
    for (i64 c = 0; c < cols; ++c) {
      x[static_cast<std::size_t>(0 * cols + c)] = 0.0f;
      x[static_cast<std::size_t>(2 * cols + c)] *= 1e30f;
      x[static_cast<std::size_t>(3 * cols + c)] *= 1e-39f;  // subnormal: 1/scale overflows to inf
    }
    x[static_cast<std::size_t>(3 * cols + 5)] = 0.0f;  // 0 * inf = NaN, which the clamps make 127
    x[static_cast<std::size_t>(1 * cols + 40)] = NAN;
    x[static_cast<std::size_t>(4 * cols + 99)] = -INFINITY;
    const auto y0 = run(scalar::kQMatmulKernels, *w, x.data(), M, QActMode::Q8Block);
    const auto y1 = run(k, *w, x.data(), M, QActMode::Q8Block);
    for (i64 m = 0; m < M; ++m)
      for (i64 r = 0; r < w->rows; ++r) {
        const std::size_t i = static_cast<std::size_t>(m * w->rows + r);
        if (m == 0) {
          EXPECT_EQ(y1[i], 0.0f);
        } else if (m == 1 || m == 4) {
          EXPECT_TRUE(std::isnan(y0[i]) && std::isnan(y1[i])) << "m=" << m << " r=" << r;
        } else {
          ASSERT_TRUE(std::isfinite(y0[i]) && std::isfinite(y1[i])) << "m=" << m << " r=" << r;
          double T = 0;  // |W_hat| <= 0.1 * 255 per element, |x_q| <= max|x| of its block
          for (i64 c = 0; c < cols; ++c) {
            double amax = 0;
            for (i64 c2 = c / 32 * 32; c2 < std::min<i64>(cols, c / 32 * 32 + 32); ++c2)
              amax = std::max(amax, std::fabs(double(x[static_cast<std::size_t>(m * cols + c2)])));
            T += 0.1 * 256 * amax;
          }
          EXPECT_LE(std::fabs(double(y0[i]) - y1[i]), 4 * (w->n_blocks + w->n_groups + 16) * 0x1p-24 * T + 1e-42)  // + subnormal spacing
              << "m=" << m << " r=" << r;
        }
      }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, QMatmulInvariance, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

// The baseline NEON table (widening multiplies) and the dotprod one (SDOT) put the same sums
// in the same lanes: bit-identical, on every container, shape and activation mode.
TEST(QMatmulNeon, DotprodAndBaselineTablesBitIdentical) {
#ifndef LOWBIT_HAVE_NEON_KERNELS
  GTEST_SKIP() << "no NEON kernels in this build";
#else
  if (!cpu_features().dotprod) GTEST_SKIP() << "this CPU has no dotprod (SDOT): only the baseline table runs";
  const QMatmulKernels& base = neon::kQMatmulKernels;
  const QMatmulKernels& dot = neon_dotprod::kQMatmulKernels;
  EXPECT_EQ(&qmatmul_kernels(Isa::Neon), &dot);
  std::vector<Shape> all = shapes();
  all.push_back({2, 5, 70, 16, false, QActMode::Q8Block});
  all.push_back({5, 6, 160, 64, true, QActMode::Q8Block});
  all.push_back({8, 7, 1000, -1, false, QActMode::Q8Block});
  all.push_back({8, 7, 1000, -1, false, QActMode::F32});
  for (const Shape& s : all) {
    const auto w = packed(s.bits, s.rows, s.cols, s.group_size, s.act_order, 23);
    for (i64 M : {1, 3, 9, 33}) {
      const auto x = test_data::uniform_data(M * s.cols, 29, -3.0f, 3.0f);
      const auto y0 = run(base, *w, x.data(), M, s.mode);
      const auto y1 = run(dot, *w, x.data(), M, s.mode);
      EXPECT_TRUE(same_bits(y0, y1.data(), y0.size())) << "bits=" << s.bits << " cols=" << s.cols << " M=" << M;
    }
  }
  // extreme int8 values straight into gemm_s8: -128 weights x +-127 activations
  const i64 n = 96;
  std::vector<std::int8_t> wi(static_cast<std::size_t>(5 * n)), ai(static_cast<std::size_t>(3 * n));
  for (std::size_t i = 0; i < wi.size(); ++i) wi[i] = static_cast<std::int8_t>(i % 3 == 0 ? -128 : (i % 3 == 1 ? 127 : -1));
  for (std::size_t i = 0; i < ai.size(); ++i) ai[i] = static_cast<std::int8_t>(i % 2 ? -127 : 127);
  std::vector<std::int32_t> a0(15), a1(15), ref(15);
  base.gemm_s8(wi.data(), n, 5, ai.data(), n, 3, n, a0.data(), 5);
  dot.gemm_s8(wi.data(), n, 5, ai.data(), n, 3, n, a1.data(), 5);
  scalar::kQMatmulKernels.gemm_s8(wi.data(), n, 5, ai.data(), n, 3, n, ref.data(), 5);
  EXPECT_EQ(a0, ref);
  EXPECT_EQ(a1, ref);
#endif
}

// On aarch64 the NEON path is the best ISA; its table is the dotprod one exactly when the CPU
// reports dotprod (HWCAP_ASIMDDP). Prints what it found (scripts/check_arm.sh shows it).
TEST(QMatmulNeon, DetectedAndChosenOnArm) {
#ifndef LOWBIT_HAVE_NEON_KERNELS
  EXPECT_FALSE(isa_supported(Isa::Neon));
  EXPECT_THROW(qmatmul_kernels(Isa::Neon), Unsupported);
  EXPECT_EQ(parse_isa("neon"), Isa::Neon);
  EXPECT_STREQ(isa_name(Isa::Neon), "neon");
#else
  ASSERT_TRUE(cpu_features().neon);
  EXPECT_TRUE(isa_supported(Isa::Neon));
  EXPECT_FALSE(isa_supported(Isa::Avx2));
  EXPECT_EQ(best_isa(), Isa::Neon);
  const bool dp = cpu_features().dotprod;
  EXPECT_EQ(&qmatmul_kernels(Isa::Neon), dp ? &neon_dotprod::kQMatmulKernels : &neon::kQMatmulKernels);
  std::printf("[ NEON     ] dotprod=%d: qmatmul uses the %s table\n", dp ? 1 : 0, dp ? "neon_dotprod (SDOT)" : "neon (SMULL)");
#endif
}
