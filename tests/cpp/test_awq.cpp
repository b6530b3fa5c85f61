// AWQ's inner loops against direct formulas (the NumPy reference in tests/python covers the rest).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/awq.hpp"
#include "lowbit/grouped_int.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

// Direct mean squared output error of W_hat vs W on X [T, n] (double).
double output_mse(const std::vector<float>& X, i64 T, const std::vector<float>& W, const std::vector<float>& Wh,
                  i64 rows, i64 n) {
  double acc = 0.0;
  for (i64 t = 0; t < T; ++t)
    for (i64 r = 0; r < rows; ++r) {
      double d = 0.0;
      for (i64 c = 0; c < n; ++c)
        d += static_cast<double>(X[static_cast<std::size_t>(t * n + c)]) *
             (static_cast<double>(Wh[static_cast<std::size_t>(r * n + c)]) - W[static_cast<std::size_t>(r * n + c)]);
      acc += d * d;
    }
  return acc / static_cast<double>(T * rows);
}

}  // namespace

TEST(Awq, GridEdgeCasesAndRealQuantizerAgree) {
  const i64 rows = 3, cols = 40;
  std::vector<float> w = test_data::uniform_data(rows * cols, 11);
  for (i64 c = 0; c < 16; ++c) w[static_cast<std::size_t>(c)] = 0.0f;         // all-zero group
  for (i64 c = 16; c < 32; ++c) w[static_cast<std::size_t>(c)] = 0.25f;       // constant group
  const AwqGridParams p{4, 16, true};
  std::vector<float> pq(w.size());
  awq_pseudo_quantize(AnyMatrixView(w.data(), rows, cols), nullptr, p, pq.data());
  for (i64 c = 0; c < 16; ++c) EXPECT_EQ(pq[static_cast<std::size_t>(c)], 0.0f);
  // constant group: scale = 1e-5 / 15, zero = clamp(-round(0.25 / scale)) = 0, codes clamp at 15
  for (i64 c = 16; c < 32; ++c) EXPECT_FLOAT_EQ(pq[static_cast<std::size_t>(c)], 15.0f * (1e-5f / 15.0f));

  const GroupedIntShape s = awq_output_shape(rows, cols, p);
  EXPECT_EQ(s.group_size, 16);
  EXPECT_EQ(s.n_groups(), 3);  // 40 = 16 + 16 + 8: a partial last group
  std::vector<std::uint8_t> q(static_cast<std::size_t>(rows * s.row_bytes())), z(static_cast<std::size_t>(rows * 3));
  std::vector<float> sc(static_cast<std::size_t>(rows * 3)), deq(w.size());
  awq_quantize(AnyMatrixView(w.data(), rows, cols), p, GroupedIntMutView{s, q.data(), sc.data(), z.data()});
  dequantize_grouped(GroupedIntConstView{s, q.data(), sc.data(), z.data(), nullptr}, deq.data());
  EXPECT_EQ(deq, pq);
}

TEST(Awq, SymmetricGridUsesSignedRange) {
  std::vector<float> w = {-1.0f, -0.5f, 0.0f, 0.3f, 0.7f, 1.0f, -0.9f, 0.1f};
  std::vector<float> pq(w.size());
  awq_pseudo_quantize(AnyMatrixView(w.data(), 1, 8), nullptr, AwqGridParams{4, -1, false}, pq.data());
  const float scale = 1.0f / 7.0f;  // amax / (2^(b-1) - 1)
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float code = std::min(std::max(std::nearbyint(w[i] / scale), -8.0f), 7.0f);
    EXPECT_EQ(pq[i], (code + 8.0f - 8.0f) * scale) << i;
  }
}

TEST(Awq, LinearSearchLossesAreTheOutputError) {
  const i64 rows = 12, n = 32, T = 50;
  std::vector<float> W = test_data::uniform_data(rows * n, 3, -0.1f, 0.1f);
  std::vector<float> X = test_data::uniform_data(T * n, 4, -1.0f, 1.0f);
  for (i64 t = 0; t < T; ++t) X[static_cast<std::size_t>(t * n + 5)] *= 10.0f;  // a salient channel
  std::vector<float> G(static_cast<std::size_t>(n * n));
  awq_gram(AnyMatrixView(X.data(), T, n), G.data());
  std::vector<double> xm(static_cast<std::size_t>(n));
  awq_act_mean_abs(AnyMatrixView(X.data(), T, n), xm.data());
  std::vector<float> x_mean(xm.begin(), xm.end()), w_mean(static_cast<std::size_t>(n));
  awq_weight_mean({AnyMatrixView(W.data(), rows, n)}, 16, w_mean.data());
  AwqScaleSearch p;
  p.n_grid = 10;
  p.grid = AwqGridParams{3, 16, true};
  const AwqScaleResult r = awq_search_linear(AnyMatrixView(W.data(), rows, n), G.data(), T, x_mean.data(),
                                             w_mean.data(), p);
  ASSERT_EQ(r.losses.size(), 10u);
  std::vector<float> s(static_cast<std::size_t>(n)), Wh(W.size());
  double best = INFINITY;
  for (int k = 0; k < 10; ++k) {
    awq_scales(x_mean.data(), w_mean.data(), n, static_cast<float>(k / 10.0), true, s.data());
    awq_pseudo_quantize(AnyMatrixView(W.data(), rows, n), s.data(), p.grid, Wh.data());
    const double direct = output_mse(X, T, W, Wh, rows, n);
    EXPECT_NEAR(r.losses[static_cast<std::size_t>(k)], direct, 1e-5 * direct) << k;
    best = std::min(best, direct);
  }
  EXPECT_LE(r.losses[static_cast<std::size_t>(r.best)], best * (1 + 1e-5));
}

TEST(Awq, ClipSearchNeverLosesToNoClipping) {
  const i64 rows = 9, n = 48, T = 64;
  std::vector<float> W = test_data::uniform_data(rows * n, 5, -0.2f, 0.2f);
  W[7] = 1.5f;  // an outlier weight: clipping it should pay off
  std::vector<float> X = test_data::uniform_data(T * n, 6);
  AwqClipSearch p;
  p.grid = AwqGridParams{3, 16, true};
  std::vector<float> max_val(static_cast<std::size_t>(rows * 3));
  std::vector<double> err(max_val.size());
  awq_clip_search(AnyMatrixView(W.data(), rows, n), AnyMatrixView(X.data(), T, n), p, max_val.data(), err.data());
  std::vector<float> Wh(W.size());
  awq_pseudo_quantize(AnyMatrixView(W.data(), rows, n), nullptr, p.grid, Wh.data());
  for (i64 r = 0; r < rows; ++r)
    for (i64 g = 0; g < 3; ++g) {
      float amax = 0.0f;
      double e0 = 0.0;  // the unclipped group's objective, directly
      for (i64 t = 0; t < T; ++t) {
        double d = 0.0;
        for (i64 c = g * 16; c < g * 16 + 16; ++c)
          d += static_cast<double>(X[static_cast<std::size_t>(t * n + c)]) *
               (Wh[static_cast<std::size_t>(r * n + c)] - W[static_cast<std::size_t>(r * n + c)]);
        e0 += d * d;
      }
      for (i64 c = g * 16; c < g * 16 + 16; ++c) amax = std::max(amax, std::fabs(W[static_cast<std::size_t>(r * n + c)]));
      const auto i = static_cast<std::size_t>(r * 3 + g);
      EXPECT_LE(max_val[i], amax);
      EXPECT_LE(err[i], e0 / T * (1 + 1e-5));
    }
  EXPECT_LT(max_val[0], 1.5f);  // the outlier's group was clipped
}

TEST(Awq, RejectsBadInput) {
  std::vector<float> W(32, 0.1f);
  W[17] = NAN;
  std::vector<float> out(32);
  EXPECT_THROW(awq_pseudo_quantize(AnyMatrixView(W.data(), 2, 16), nullptr, AwqGridParams{}, out.data()),
               InvalidArgument);
  W[17] = 0.1f;
  std::vector<float> s(16, 1.0f);
  s[3] = 0.0f;
  EXPECT_THROW(awq_pseudo_quantize(AnyMatrixView(W.data(), 2, 16), s.data(), AwqGridParams{}, out.data()),
               InvalidArgument);
  EXPECT_THROW(awq_pseudo_quantize(AnyMatrixView(W.data(), 2, 16), nullptr, AwqGridParams{1, 16, true}, out.data()),
               InvalidArgument);
}
