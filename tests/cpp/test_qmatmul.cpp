// Quantized-matmul kernels: every ISA variant against the scalar definition (integer parts
// and activation quantization bit for bit; float sums within the summation-order bound), and
// the scalar definition against an independent double-precision computation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/grouped_int.hpp"
#include "lowbit/qmatmul.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

class QMatmulIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported on this CPU/build";
  }
};

// A random grouped-int matrix (codes, scales, zeros) and its prepared form.
struct Grouped {
  GroupedIntShape shape;
  std::vector<std::uint8_t> qweight, zeros;
  std::vector<float> scales;
  std::vector<std::int32_t> g_idx;
  std::shared_ptr<PackedWeights> packed;
  std::vector<float> deq;  // W_hat [rows, cols]

  Grouped(int bits, i64 rows, i64 cols, i64 group_size, bool act_order, std::uint64_t seed) {
    shape = make_grouped_shape(bits, rows, cols, group_size);
    const i64 G = shape.n_groups(), maxq = shape.maxq();
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
    qweight.resize(static_cast<std::size_t>(rows * shape.row_bytes()));
    for (i64 r = 0; r < rows; ++r) {
      const auto u = test_data::uniform_data(cols, seed + static_cast<std::uint64_t>(r), 0.0f, 1.0f);
      for (i64 c = 0; c < cols; ++c)
        codes[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(std::min<i64>(maxq, static_cast<i64>(u[c] * (maxq + 1))));
      pack_codes(codes.data(), cols, bits, qweight.data() + r * shape.row_bytes());
    }
    const auto s = test_data::uniform_data(rows * G, seed + 1000, 0.001f, 0.1f);
    const auto z = test_data::uniform_data(rows * G, seed + 2000, 0.0f, 1.0f);
    scales = s;
    zeros.resize(static_cast<std::size_t>(rows * G));
    for (std::size_t i = 0; i < zeros.size(); ++i) zeros[i] = static_cast<std::uint8_t>(std::min<i64>(maxq, static_cast<i64>(z[i] * (maxq + 1))));
    GroupedIntConstView v{shape, qweight.data(), scales.data(), zeros.data(), nullptr};
    if (act_order) {
      g_idx.resize(static_cast<std::size_t>(cols));
      for (i64 c = 0; c < cols; ++c) g_idx[static_cast<std::size_t>(c)] = static_cast<std::int32_t>((c * 7 + 3) % G);
      v.g_idx = g_idx.data();
    }
    packed = prepare_grouped(v);
    deq.resize(static_cast<std::size_t>(rows * cols));
    dequantize_grouped(v, deq.data());
  }
};

struct Case {
  int bits;
  i64 rows, cols, group_size;
  bool act_order;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {4, 5, 64, 32, false},  {4, 7, 100, -1, false}, {4, 9, 256, 128, false}, {8, 5, 96, 32, false},
      {8, 3, 77, -1, false},  {2, 4, 70, 16, false},  {3, 6, 130, 48, true},   {5, 5, 160, 64, true},
      {6, 3, 33, 0, false},   {7, 4, 200, 40, false}, {4, 5, 300, 128, true},  {8, 3, 128, 128, true}};
  return c;
}

std::vector<float> act_rows(i64 M, i64 cols, std::uint64_t seed) {
  auto x = test_data::uniform_data(M * cols, seed, -2.0f, 2.0f);
  if (M > 1)
    for (i64 c = 0; c < cols; ++c) x[static_cast<std::size_t>(cols + c)] = 0.0f;  // an all-zero row
  return x;
}

// Run the int8-activation path of one kernel table.
std::vector<float> run(const QMatmulKernels& k, const PackedWeights& w, const std::vector<float>& x, i64 M,
                       QActMode mode = QActMode::Q8Block) {
  std::vector<float> y(static_cast<std::size_t>(M * w.rows));
  qmatmul(x.data(), ActDType::F32, M, w.cols, w, mode, y.data(), k);
  return y;
}

}  // namespace

TEST_P(QMatmulIsa, QuantizeActMatchesScalarBitForBit) {
  const QMatmulKernels& ref = scalar::kQMatmulKernels;
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (i64 nb : {1, 2, 5}) {
    std::vector<std::vector<float>> inputs = {test_data::uniform_data(nb * 32, 7, -3.0f, 3.0f),
                                              std::vector<float>(static_cast<std::size_t>(nb * 32), 0.0f),
                                              test_data::uniform_data(nb * 32, 8, -3e38f, 3e38f)};
    std::vector<float> ties(static_cast<std::size_t>(nb * 32));
    for (std::size_t i = 0; i < ties.size(); ++i) ties[i] = 0.5f * static_cast<float>(i % 9) - 2.0f;
    inputs.push_back(ties);
    std::vector<float> tiny = test_data::uniform_data(nb * 32, 9, -1e-39f, 1e-39f);  // 1/scale overflows
    tiny[3] = 0.0f;                                                                  // 0 * inf = NaN
    inputs.push_back(tiny);
    std::vector<float> bad = inputs[0];
    bad[5] = NAN;
    inputs.push_back(bad);
    for (const auto& x : inputs) {
      std::vector<std::int8_t> a0(x.size()), a1(x.size());
      std::vector<float> d0(static_cast<std::size_t>(nb)), d1(static_cast<std::size_t>(nb));
      std::vector<std::int32_t> s0(static_cast<std::size_t>(nb)), s1(static_cast<std::size_t>(nb));
      ref.quantize_row_q8(x.data(), nb, a0.data(), d0.data(), s0.data());
      k.quantize_row_q8(x.data(), nb, a1.data(), d1.data(), s1.data());
      EXPECT_EQ(a0, a1);
      EXPECT_EQ(s0, s1);
      for (i64 b = 0; b < nb; ++b) {
        if (std::isnan(d0[b])) EXPECT_TRUE(std::isnan(d1[b]));
        else EXPECT_EQ(d0[b], d1[b]);
      }
    }
  }
}

TEST_P(QMatmulIsa, DequantizeRowsMatchesScalarAndFormat) {
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (const Case& c : cases()) {
    Grouped q(c.bits, c.rows, c.cols, c.group_size, c.act_order, 11);
    const PackedWeights& w = *q.packed;
    std::vector<float> d0(static_cast<std::size_t>(w.rows * w.padded_cols())), d1(d0.size());
    scalar::kQMatmulKernels.dequantize_rows(w, 0, w.rows, d0.data());
    k.dequantize_rows(w, 0, w.rows, d1.data());
    EXPECT_EQ(0, std::memcmp(d0.data(), d1.data(), d0.size() * sizeof(float)));
    // the padded layout holds W_hat: s*stored + offset within one rounding of s*(code - z)
    for (i64 r = 0; r < w.rows; ++r)
      for (i64 p = 0; p < w.padded_cols(); ++p) {
        const i64 col = w.col_of.empty() ? (p < w.cols ? p : -1) : w.col_of[static_cast<std::size_t>(p)];
        if (col < 0) continue;
        const float want = q.deq[static_cast<std::size_t>(r * w.cols + col)];
        EXPECT_NEAR(d0[static_cast<std::size_t>(r * w.padded_cols() + p)], want, 1e-6f * std::fabs(want) + 0.1f * 256 * 0x1p-22f)
            << "bits=" << c.bits << " r=" << r << " col=" << col;
      }
  }
}

TEST_P(QMatmulIsa, GemmQ8WithinSummationBoundOfScalar) {
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (const Case& c : cases())
    for (i64 M : {1, 2, 3, 7, 8, 9, 33}) {
      Grouped q(c.bits, c.rows, c.cols, c.group_size, c.act_order, 21);
      const PackedWeights& w = *q.packed;
      const auto x = act_rows(M, c.cols, 31 + static_cast<std::uint64_t>(M));
      const auto y0 = run(scalar::kQMatmulKernels, w, x, M);
      const auto y1 = run(k, w, x, M);
      for (i64 m = 0; m < M; ++m)
        for (i64 r = 0; r < c.rows; ++r) {
          double T = 0;  // sum of |terms|: bounds every float summation order's error
          for (i64 col = 0; col < c.cols; ++col)
            T += std::fabs(double(q.deq[r * c.cols + col])) * (std::fabs(x[m * c.cols + col]) + 0.02);  // |x_q| <= |x| + 2/254
          const double n = static_cast<double>(w.n_blocks + w.n_groups + 16);
          const double tol = 4 * n * 0x1p-24 * T + 1e-30;
          const std::size_t i = static_cast<std::size_t>(m * c.rows + r);
          EXPECT_LE(std::fabs(double(y0[i]) - y1[i]), tol)
              << "bits=" << c.bits << " cols=" << c.cols << " M=" << M << " m=" << m << " r=" << r;
        }
    }
}

TEST_P(QMatmulIsa, GemmS8ExactAndW8A8MatchesScalarBitForBit) {
  const QMatmulKernels& k = qmatmul_kernels(GetParam());
  for (i64 cols : {32, 96, 77, 1000}) {
    Grouped q(8, 7, cols, -1, false, 41);
    const PackedWeights& w = *q.packed;
    for (i64 M : {1, 2, 3, 9}) {
      const auto x = act_rows(M, cols, 51);
      EXPECT_EQ(run(scalar::kQMatmulKernels, w, x, M, QActMode::Q8Token), run(k, w, x, M, QActMode::Q8Token));
    }
    // extreme int8 values: -128 weights x +-127 activations must not saturate
    const i64 n = w.padded_cols();
    std::vector<std::int8_t> wi(static_cast<std::size_t>(3 * n)), ai(static_cast<std::size_t>(2 * n));
    for (std::size_t i = 0; i < wi.size(); ++i) wi[i] = static_cast<std::int8_t>(i % 3 == 0 ? -128 : (i % 3 == 1 ? 127 : -1));
    for (std::size_t i = 0; i < ai.size(); ++i) ai[i] = static_cast<std::int8_t>(i % 2 ? -127 : 127);
    std::vector<std::int32_t> a0(6), a1(6);
    scalar::kQMatmulKernels.gemm_s8(wi.data(), n, 3, ai.data(), n, 2, n, a0.data(), 3);
    k.gemm_s8(wi.data(), n, 3, ai.data(), n, 2, n, a1.data(), 3);
    EXPECT_EQ(a0, a1);
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, QMatmulIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

// The scalar definition against an independent double computation from the same quantized
// activations: sum_k W_hat[r,k] * d_b(k) * a_k.
TEST(QMatmulScalar, Q8MatchesDoubleFromQuantizedActivations) {
  for (const Case& c : cases()) {
    Grouped q(c.bits, c.rows, c.cols, c.group_size, c.act_order, 61);
    const PackedWeights& w = *q.packed;
    const i64 M = 3, Kp = w.padded_cols();
    const auto x = act_rows(M, c.cols, 71);
    const auto y = run(scalar::kQMatmulKernels, w, x, M);
    for (i64 m = 0; m < M; ++m) {
      // padded row, then its Q8 blocks
      std::vector<float> xp(static_cast<std::size_t>(Kp), 0.0f);
      for (i64 p = 0; p < Kp; ++p) {
        const i64 col = w.col_of.empty() ? (p < c.cols ? p : -1) : w.col_of[static_cast<std::size_t>(p)];
        if (col >= 0) xp[static_cast<std::size_t>(p)] = x[static_cast<std::size_t>(m * c.cols + col)];
      }
      std::vector<std::int8_t> a(static_cast<std::size_t>(Kp));
      std::vector<float> d(static_cast<std::size_t>(w.n_blocks));
      std::vector<std::int32_t> s(static_cast<std::size_t>(w.n_blocks));
      scalar::kQMatmulKernels.quantize_row_q8(xp.data(), w.n_blocks, a.data(), d.data(), s.data());
      for (i64 r = 0; r < c.rows; ++r) {
        double want = 0, T = 0, act_err = 0;
        for (i64 p = 0; p < Kp; ++p) {
          const i64 col = w.col_of.empty() ? (p < c.cols ? p : -1) : w.col_of[static_cast<std::size_t>(p)];
          if (col < 0) continue;
          const double wv = q.deq[static_cast<std::size_t>(r * c.cols + col)];
          const double xq = double(d[p / 32]) * a[static_cast<std::size_t>(p)];
          want += wv * xq;
          T += std::fabs(wv * xq) + 1e-6 * std::fabs(wv) * std::fabs(xq);
          act_err += std::fabs(wv) * d[p / 32] / 2;
        }
        const double got = y[static_cast<std::size_t>(m * c.rows + r)];
        EXPECT_LE(std::fabs(got - want), 4 * (w.n_blocks + w.n_groups + 8) * 0x1p-24 * T + 1e-6 * T + 1e-30)
            << "bits=" << c.bits << " r=" << r;
        // and the documented bound against the float activations
        double exact = 0;
        for (i64 col = 0; col < c.cols; ++col)
          exact += double(q.deq[static_cast<std::size_t>(r * c.cols + col)]) * x[static_cast<std::size_t>(m * c.cols + col)];
        EXPECT_LE(std::fabs(got - exact), act_err * 1.001 + 1e-4 * T + 1e-30) << "bits=" << c.bits << " r=" << r;
      }
    }
  }
}
