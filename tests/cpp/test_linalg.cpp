// The dense kernels: against naive double-precision references, every ISA against scalar,
// and bit-identical results for one and two threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/gptq.hpp"
#include "lowbit/linalg.hpp"
#include "lowbit/parallel.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

class LinalgIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported on this CPU/build";
  }
  const LinalgKernels& k() const { return linalg_kernels(GetParam()); }
};

// SPD matrix X^T X / T + I of size n (row-major, full).
std::vector<float> spd(i64 n, std::uint64_t seed) {
  const i64 T = n + 7;
  const std::vector<float> X = test_data::uniform_data(T * n, seed);
  std::vector<float> H(static_cast<std::size_t>(n * n));
  for (i64 i = 0; i < n; ++i)
    for (i64 j = 0; j < n; ++j) {
      double s = 0;
      for (i64 t = 0; t < T; ++t) s += static_cast<double>(X[t * n + i]) * X[t * n + j];
      H[i * n + j] = static_cast<float>(s / T + (i == j ? 1.0 : 0.0));
    }
  return H;
}

const std::vector<i64> kSizes = {1, 2, 5, 64, 127, 129, 300};

}  // namespace

TEST_P(LinalgIsa, SyrkLowerTriangleOnly) {
  for (i64 n : {1, 7, 255, 257, 300}) {
    const i64 T = 33;
    const std::vector<float> X = test_data::uniform_data(T * n, 3);
    std::vector<float> H(static_cast<std::size_t>(n * n), 5.0f);
    std::vector<double> H64(H.size(), 5.0);
    k().syrk_lower_f32(X.data(), T, n, n, 0.5f, 0.25f, H.data());
    k().syrk_lower_f64(X.data(), T, n, n, 0.5, 0.25, H64.data());
    for (i64 i = 0; i < n; ++i)
      for (i64 j = 0; j < n; ++j) {
        if (j > i) {
          ASSERT_EQ(H[i * n + j], 5.0f) << "upper triangle must stay untouched";
          continue;
        }
        double s = 0;
        for (i64 t = 0; t < T; ++t) s += static_cast<double>(X[t * n + i]) * X[t * n + j];
        const double want = 0.25 * 5.0 + 0.5 * s;
        ASSERT_NEAR(H[i * n + j], want, 1e-5 * (1 + std::fabs(want))) << n;
        ASSERT_NEAR(H64[i * n + j], want, 1e-12 * (1 + std::fabs(want))) << n;
      }
  }
}

TEST_P(LinalgIsa, CholeskyReconstructs) {
  for (i64 n : kSizes) {
    const std::vector<float> A = spd(n, static_cast<std::uint64_t>(n));
    std::vector<float> L = A;
    ASSERT_TRUE(k().cholesky_lower(L.data(), n)) << n;
    double err = 0, norm = 0;
    for (i64 i = 0; i < n; ++i)
      for (i64 j = 0; j <= i; ++j) {
        double s = 0;
        for (i64 t = 0; t <= j; ++t) s += static_cast<double>(L[i * n + t]) * L[j * n + t];
        err = std::max(err, std::fabs(s - A[i * n + j]));
        norm = std::max(norm, static_cast<double>(std::fabs(A[i * n + j])));
      }
    EXPECT_LT(err / norm, 1e-5) << n;
  }
}

TEST_P(LinalgIsa, CholeskyRejectsIndefinite) {
  for (i64 n : {3, 200}) {
    std::vector<float> A = spd(n, 9);
    A[(n - 1) * n + (n - 1)] = -1.0f;
    EXPECT_FALSE(k().cholesky_lower(A.data(), n));
    std::vector<float> Z(static_cast<std::size_t>(n * n), 0.0f);
    EXPECT_FALSE(k().cholesky_lower(Z.data(), n));
  }
}

TEST_P(LinalgIsa, InverseOfLowerTriangular) {
  for (i64 n : kSizes) {
    std::vector<float> L = spd(n, 11);
    ASSERT_TRUE(k().cholesky_lower(L.data(), n));
    for (i64 i = 0; i < n; ++i)
      for (i64 j = i + 1; j < n; ++j) L[i * n + j] = 0.0f;  // clean lower-triangular L
    std::vector<float> X = L;
    for (i64 i = 0; i < n; ++i)
      for (i64 j = i + 1; j < n; ++j) X[i * n + j] = 123.0f;  // garbage above: must be ignored
    k().invert_lower(X.data(), n);
    double err = 0;
    for (i64 i = 0; i < n; ++i)
      for (i64 j = 0; j < n; ++j) {
        if (j > i) ASSERT_EQ(X[i * n + j], 0.0f);
        double s = 0;
        for (i64 t = 0; t < n; ++t) s += static_cast<double>(L[i * n + t]) * X[t * n + j];
        err = std::max(err, std::fabs(s - (i == j ? 1.0 : 0.0)));
      }
    EXPECT_LT(err, 1e-4) << n;
  }
}

TEST_P(LinalgIsa, QuadraticFormMatchesDirectSum) {
  const i64 rows = 70, n = 45;
  const std::vector<float> D = test_data::uniform_data(rows * n, 4);
  std::vector<float> H = spd(n, 5);
  double want = 0;
  for (i64 r = 0; r < rows; ++r)
    for (i64 i = 0; i < n; ++i)
      for (i64 j = 0; j < n; ++j) want += static_cast<double>(D[r * n + i]) * H[i * n + j] * D[r * n + j];
  EXPECT_NEAR(k().quadratic_form(D.data(), rows, n, H.data()), want, 1e-5 * std::fabs(want));
}

TEST_P(LinalgIsa, ThreadCountDoesNotChangeAnyBit) {
  const i64 n = 300;
  const std::vector<float> A = spd(n, 21);
  const std::vector<float> X = test_data::uniform_data(500 * n, 22);
  std::vector<std::vector<float>> out;
  for (int t : {1, 2}) {
    set_num_threads(t);
    std::vector<float> L = A, H(static_cast<std::size_t>(n * n), 0.0f);
    k().cholesky_lower(L.data(), n);
    k().invert_lower(L.data(), n);
    k().syrk_lower_f32(X.data(), 500, n, n, 1.0f, 0.0f, H.data());
    L.insert(L.end(), H.begin(), H.end());
    out.push_back(L);
  }
  set_num_threads(0);
  EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Isas, LinalgIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

TEST(Gptq, BitIdenticalForOneAndTwoThreads) {
  const i64 rows = 150, n = 200;
  const std::vector<float> W = test_data::uniform_data(rows * n, 31);
  const std::vector<float> H = spd(n, 32);
  GptqParams p;
  p.bits = 3;
  p.group_size = 64;
  p.desc_act = true;
  const GroupedIntShape s = gptq_output_shape(rows, n, p);
  std::vector<std::vector<std::uint8_t>> q;
  std::vector<double> obj;
  for (int t : {1, 2}) {
    set_num_threads(t);
    std::vector<std::uint8_t> qw(static_cast<std::size_t>(rows * s.row_bytes())), zs(static_cast<std::size_t>(rows * s.n_groups()));
    std::vector<float> sc(zs.size());
    std::vector<std::int32_t> g(static_cast<std::size_t>(n));
    const GptqStats st = gptq_quantize(AnyMatrixView(W.data(), rows, n), H.data(), n, n, p,
                                       GroupedIntMutView{s, qw.data(), sc.data(), zs.data()}, g.data());
    q.push_back(qw);
    obj.push_back(st.objective);
    EXPECT_LT(st.objective, st.objective_rtn);
  }
  set_num_threads(0);
  EXPECT_EQ(q[0], q[1]);
  EXPECT_EQ(obj[0], obj[1]);
}

TEST(Grid, MseSearchNeverWorseThanMinMax) {
  for (int bits : {2, 3, 4}) {
    std::vector<float> x = test_data::uniform_data(128, static_cast<std::uint64_t>(bits));
    x[5] = 8.0f;  // an outlier: shrinking the range pays off
    MseSearch mse;
    mse.enabled = true;
    const Grid a = fit_grid(x.data(), 128, bits, false, MseSearch{});
    const Grid b = fit_grid(x.data(), 128, bits, false, mse);
    auto err = [&](const Grid& g) {
      double e = 0;
      const float qmax = static_cast<float>((1 << bits) - 1);
      for (float v : x) {
        float q = std::nearbyint(v / g.scale) + g.zero;
        q = std::min(std::max(q, 0.0f), qmax);
        e += std::pow(std::fabs(g.scale * (q - g.zero) - v), 2.4);
      }
      return e;
    };
    EXPECT_LE(err(b), err(a));
    EXPECT_LT(b.scale, a.scale);
  }
}
