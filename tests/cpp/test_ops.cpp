// The model ops: each against a naive double-precision loop written here, odd sizes, the
// same bytes for one and two threads, and bad arguments rejected with InvalidArgument.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/half.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"
#include "test_helpers.hpp"

using namespace lowbit;
using test_data::uniform_data;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kEps32 = 1.0 / (1 << 23);  // float32 machine epsilon (2 ulp of rounding)

// Runs fn with 1 and then 2 threads; the two outputs (read by `bytes`) must be equal bytes.
template <class Fn, class Out>
void expect_thread_invariant(Fn fn, Out& out) {
  set_num_threads(1);
  fn();
  const Out one = out;
  set_num_threads(2);
  fn();
  set_num_threads(0);
  ASSERT_EQ(one.size(), out.size());
  EXPECT_EQ(0, std::memcmp(one.data(), out.data(), one.size() * sizeof(one[0])))
      << "results differ between 1 and 2 threads";
}

bool same_bits(float a, float b) { return float_bits(a) == float_bits(b); }
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---- references (double) ------------------------------------------------------------

std::vector<double> rms_norm_ref(const std::vector<float>& x, i64 M, i64 D, const std::vector<float>& w, double eps) {
  std::vector<double> y(x.size());
  for (i64 m = 0; m < M; ++m) {
    double ss = 0;
    for (i64 d = 0; d < D; ++d) ss += static_cast<double>(x[m * D + d]) * x[m * D + d];
    const double r = 1.0 / std::sqrt(ss / D + eps);
    for (i64 d = 0; d < D; ++d) y[m * D + d] = x[m * D + d] * r * w[d];
  }
  return y;
}

// Causal GQA in double; k/v [S, nkv, hd] contiguous.
std::vector<double> attention_ref(const std::vector<float>& q, i64 T, i64 nh, i64 hd, const std::vector<float>& k,
                                  const std::vector<float>& v, i64 nkv, i64 q_offset, double scale) {
  std::vector<double> out(static_cast<std::size_t>(T * nh * hd), 0.0);
  for (i64 t = 0; t < T; ++t)
    for (i64 h = 0; h < nh; ++h) {
      const i64 g = h / (nh / nkv), n = q_offset + t + 1;
      std::vector<double> s(static_cast<std::size_t>(n));
      double mx = -1e300, sum = 0;
      for (i64 j = 0; j < n; ++j) {
        double d = 0;
        for (i64 i = 0; i < hd; ++i) d += static_cast<double>(q[(t * nh + h) * hd + i]) * k[(j * nkv + g) * hd + i];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      for (i64 j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (i64 j = 0; j < n; ++j)
        for (i64 i = 0; i < hd; ++i) out[(t * nh + h) * hd + i] += s[j] / sum * v[(j * nkv + g) * hd + i];
    }
  return out;
}

// log softmax of a row in double (no shortcuts: exp of the raw logits is fine at these sizes)
std::vector<double> log_softmax_ref(const float* r, i64 V) {
  double mx = r[0];
  for (i64 j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(r[j]));
  double s = 0;
  for (i64 j = 0; j < V; ++j) s += std::exp(r[j] - mx);
  std::vector<double> out(static_cast<std::size_t>(V));
  for (i64 j = 0; j < V; ++j) out[j] = r[j] - mx - std::log(s);
  return out;
}

std::vector<float> to_widened(const std::vector<std::uint16_t>& bits, bool bf16) {
  std::vector<float> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) out[i] = bf16 ? bf16_to_fp32(bits[i]) : fp16_to_fp32(bits[i]);
  return out;
}

}  // namespace

// ---- rms_norm -------------------------------------------------------------------------

TEST(OpsRmsNorm, MatchesDoubleReference) {
  for (i64 D : {1, 3, 577})
    for (i64 M : {1, 7}) {
      const std::vector<float> x = uniform_data(M * D, 1 + D, -3.0f, 2.0f);
      const std::vector<float> w = uniform_data(D, 2 + D, 0.5f, 1.5f);
      std::vector<float> y(x.size());
      rms_norm(x.data(), M, D, w.data(), 1e-5f, y.data());
      const std::vector<double> ref = rms_norm_ref(x, M, D, w, 1e-5f);
      // float32 roundings: mean, + eps, 1/sqrt, two products: a few ulp relative
      for (std::size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], ref[i], 4 * kEps32 * std::fabs(ref[i]) + 1e-30) << "D=" << D << " M=" << M << " i=" << i;
    }
}

TEST(OpsRmsNorm, EmptyZeroRowsAndThreadInvariance) {
  rms_norm(nullptr, 0, 5, nullptr, 1e-6f, nullptr);  // M = 0: nothing touched
  std::vector<float> x(3, 0.0f), w(3, 1.0f), y(3, 7.0f);
  rms_norm(x.data(), 1, 3, w.data(), 1e-6f, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);  // zero row: 0 * 1/sqrt(eps)
  EXPECT_THROW(rms_norm(x.data(), 1, 0, w.data(), 1e-6f, y.data()), InvalidArgument);

  const i64 M = 67, D = 129;
  const std::vector<float> xs = uniform_data(M * D, 5), ws = uniform_data(D, 6);
  std::vector<float> out(static_cast<std::size_t>(M * D));
  expect_thread_invariant([&] { rms_norm(xs.data(), M, D, ws.data(), 1e-5f, out.data()); }, out);
}

// ---- rope -----------------------------------------------------------------------------

TEST(OpsRope, BothPairingsMatchDoubleRotation) {
  const i64 T = 7, H = 3;
  const std::vector<std::int64_t> pos = {0, 1, 2, 9, 100, 4095, 31};
  for (i64 hd : {2, 6, 64})
    for (bool interleaved : {true, false})
      for (float scaling : {1.0f, 0.75f}) {
        std::vector<float> inv(static_cast<std::size_t>(hd / 2));
        for (i64 i = 0; i < hd / 2; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / hd));
        const std::vector<float> x0 = uniform_data(T * H * hd, 7 + hd);
        std::vector<float> x = x0;
        rope_inplace(x.data(), T, H, hd, pos.data(), inv.data(), interleaved, scaling);
        for (i64 t = 0; t < T; ++t)
          for (i64 h = 0; h < H; ++h)
            for (i64 i = 0; i < hd / 2; ++i) {
              // the angle as the op defines it (float32 product), the rotation in double
              const double ang = static_cast<float>(static_cast<float>(pos[t]) * inv[i]);
              const double c = std::cos(ang) * scaling, s = std::sin(ang) * scaling;
              const i64 ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + hd / 2;
              const std::size_t base = static_cast<std::size_t>((t * H + h) * hd);
              const double a = x0[base + ia], b = x0[base + ib];
              const double tol = 4 * kEps32 * (std::fabs(a) + std::fabs(b));
              ASSERT_NEAR(x[base + ia], a * c - b * s, tol) << "hd=" << hd << " interleaved=" << interleaved;
              ASSERT_NEAR(x[base + ib], b * c + a * s, tol) << "hd=" << hd << " interleaved=" << interleaved;
            }
      }
}

TEST(OpsRope, PositionZeroIsIdentityAndBadHeadDim) {
  std::vector<float> x = uniform_data(8, 3), x0 = x;
  const std::vector<std::int64_t> pos = {0};
  const std::vector<float> inv = {1.0f, 0.1f, 0.01f, 0.001f};
  rope_inplace(x.data(), 1, 1, 8, pos.data(), inv.data(), false, 1.0f);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], x0[i]);
  EXPECT_THROW(rope_inplace(x.data(), 1, 1, 7, pos.data(), inv.data(), true, 1.0f), InvalidArgument);
  EXPECT_THROW(rope_inplace(x.data(), 1, 0, 8, pos.data(), inv.data(), true, 1.0f), InvalidArgument);
}

TEST(OpsRope, ThreadInvariance) {
  const i64 T = 45, H = 3, hd = 10;
  std::vector<std::int64_t> pos(T);
  for (i64 t = 0; t < T; ++t) pos[t] = 3 * t + 1;
  const std::vector<float> inv = {1.0f, 0.3f, 0.1f, 0.03f, 0.01f};
  const std::vector<float> x0 = uniform_data(T * H * hd, 9);
  std::vector<float> x;
  expect_thread_invariant(
      [&] {
        x = x0;
        rope_inplace(x.data(), T, H, hd, pos.data(), inv.data(), true, 1.0f);
      },
      x);
}

// ---- attention ------------------------------------------------------------------------

namespace {

struct AttnCase {
  i64 T, S, nh, nkv, hd, q_offset;
};

std::vector<float> run_attention(const std::vector<float>& q, const std::vector<float>& k,
                                 const std::vector<float>& v, const AttnCase& c, float scale) {
  AttentionArgs a;
  a.q = q.data();
  a.T = c.T;
  a.n_heads = c.nh;
  a.head_dim = c.hd;
  a.k = KvView{k.data(), c.nkv * c.hd, c.hd};
  a.v = KvView{v.data(), c.nkv * c.hd, c.hd};
  a.S = c.S;
  a.n_kv_heads = c.nkv;
  a.q_offset = c.q_offset;
  a.scale = scale;
  std::vector<float> out(static_cast<std::size_t>(c.T * c.nh * c.hd));
  attention(a, out.data());
  return out;
}

}  // namespace

TEST(OpsAttention, MatchesDoubleReference) {
  // T: 1 (decode) and counts that are not multiples of the query tile (64 queries for 9/3
  // heads, 192 for n_heads = n_kv_heads, 24 for 8/1); q_offset > 0 with T > 1 (chunked
  // prefill), also across the 256-key blocks; S beyond q_offset + T (keys never seen); group
  // sizes 8/1, 9/3, 4/4; head_dim 1 .. 128.
  const std::vector<AttnCase> cases = {
      {1, 1, 1, 1, 1, 0},        {7, 7, 8, 4, 16, 0},       {7, 12, 8, 4, 16, 5},     {7, 12, 3, 1, 5, 0},
      {1, 40, 3, 1, 64, 39},     {7, 9, 6, 6, 3, 2},        {5, 300, 2, 1, 17, 100},  {63, 63, 9, 3, 64, 0},
      {65, 65, 8, 1, 8, 0},      {257, 257, 4, 4, 64, 0},   {257, 300, 9, 3, 128, 43}, {65, 600, 8, 1, 128, 535},
      {7, 1000, 9, 3, 64, 200},  {200, 520, 4, 4, 8, 313},  {1, 2048, 9, 3, 64, 2047}};
  const Isa before = active_isa();
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    force_isa(isa);
    for (const AttnCase& c : cases) {
      const std::vector<float> q = uniform_data(c.T * c.nh * c.hd, 11 + c.hd, -2.0f, 2.0f);
      const std::vector<float> k = uniform_data(c.S * c.nkv * c.hd, 12 + c.hd, -2.0f, 2.0f);
      const std::vector<float> v = uniform_data(c.S * c.nkv * c.hd, 13 + c.hd, -1.0f, 1.0f);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
      const std::vector<float> out = run_attention(q, k, v, c, scale);
      const std::vector<double> ref = attention_ref(q, c.T, c.nh, c.hd, k, v, c.nkv, c.q_offset, scale);
      // |v| <= 1. A float32 score is off by ~sqrt(hd) u scale sum|q_i k_i| <~ 8e-6 (u = 6e-8,
      // scale sum|q_i k_i| ~ sqrt(hd) here), which moves its weight by that relative amount;
      // the output, a weighted mean of v, averages these errors, and the exponentials (~2 u)
      // and float32 sums over <= 2048 keys add a few u sqrt(S). Observed errors stay below
      // 1e-6; the bound 1e-5 (relative to max|v| = 1: outputs near 0 have no scale of their
      // own) still catches any real mistake (a wrong mask or rescale is off by > 1e-2).
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 1e-5) << isa_name(isa) << " T=" << c.T << " S=" << c.S << " nh=" << c.nh
                                          << " nkv=" << c.nkv << " hd=" << c.hd << " q_offset=" << c.q_offset
                                          << " i=" << i;
    }
  }
  force_isa(before);
}

TEST(OpsAttention, LargeScoresNeitherOverflowNorLoseAccuracy) {
  // scale * q.k spans about +-80 (e^80 = 5.5e34: sums of unshifted exponentials would come
  // within reach of float32's 3.4e38), over two key blocks (the running maximum rises from one
  // block to the next); differences to the row maximum reach -160, where weights underflow to 0
  const AttnCase c{70, 300, 4, 2, 64, 230};
  const std::vector<float> q = uniform_data(c.T * c.nh * c.hd, 91, -1.0f, 1.0f);
  const std::vector<float> k = uniform_data(c.S * c.nkv * c.hd, 92, -1.0f, 1.0f);
  const std::vector<float> v = uniform_data(c.S * c.nkv * c.hd, 93, -1.0f, 1.0f);
  double max_score = 0;
  for (i64 t = 0; t < c.T; ++t)
    for (i64 h = 0; h < c.nh; ++h)
      for (i64 j = 0; j <= c.q_offset + t; ++j) {
        double d = 0;
        for (i64 i = 0; i < c.hd; ++i)
          d += static_cast<double>(q[(t * c.nh + h) * c.hd + i]) * k[(j * c.nkv + h / 2) * c.hd + i];
        max_score = std::max(max_score, std::fabs(d));
      }
  const float scale = static_cast<float>(80.0 / max_score);
  const std::vector<float> out = run_attention(q, k, v, c, scale);
  const std::vector<double> ref = attention_ref(q, c.T, c.nh, c.hd, k, v, c.nkv, c.q_offset, scale);
  // A score of magnitude 80 is itself rounded by 80 u = 5e-6, and its dot product of 64 terms
  // (scale sum|q_i k_i| ~ 100 here) adds ~ sqrt(64) u 100 = 5e-5: the weights move by up to
  // that relative amount. Observed: 7e-6; the bound is 1e-4 (x max|v| = 1).
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(out[i])) << "i=" << i;
    ASSERT_NEAR(out[i], ref[i], 1e-4) << "i=" << i;
  }
}

TEST(OpsAttention, StridedCacheViewEqualsContiguous) {
  // k, v as the first S rows of a cache [Smax, nkv, hd] laid out [Smax][nkv][hd + pad]:
  // the head stride differs from hd, the position stride from nkv * hd
  const AttnCase c{3, 10, 4, 2, 8, 7};
  const i64 pad = 3, Smax = 16;
  const std::vector<float> q = uniform_data(c.T * c.nh * c.hd, 21);
  const std::vector<float> k = uniform_data(c.S * c.nkv * c.hd, 22), v = uniform_data(c.S * c.nkv * c.hd, 23);
  std::vector<float> kc(static_cast<std::size_t>(Smax * c.nkv * (c.hd + pad)), kNaN), vc = kc;
  for (i64 s = 0; s < c.S; ++s)
    for (i64 g = 0; g < c.nkv; ++g)
      for (i64 d = 0; d < c.hd; ++d) {
        kc[(s * c.nkv + g) * (c.hd + pad) + d] = k[(s * c.nkv + g) * c.hd + d];
        vc[(s * c.nkv + g) * (c.hd + pad) + d] = v[(s * c.nkv + g) * c.hd + d];
      }
  AttentionArgs a;
  a.q = q.data();
  a.T = c.T;
  a.n_heads = c.nh;
  a.head_dim = c.hd;
  a.k = KvView{kc.data(), c.nkv * (c.hd + pad), c.hd + pad};
  a.v = KvView{vc.data(), c.nkv * (c.hd + pad), c.hd + pad};
  a.S = c.S;
  a.n_kv_heads = c.nkv;
  a.q_offset = c.q_offset;
  a.scale = 0.3f;
  std::vector<float> out(static_cast<std::size_t>(c.T * c.nh * c.hd));
  attention(a, out.data());
  const std::vector<float> want = run_attention(q, k, v, c, 0.3f);
  EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * sizeof(float)));  // the NaN padding is never read
}

TEST(OpsAttention, DecodeStepsEqualOneBatchedCall) {
  // the KV-cache property: token t alone with S = t + 1 keys gives the batched row t
  const AttnCase full{9, 9, 6, 2, 12, 0};
  const std::vector<float> q = uniform_data(full.T * full.nh * full.hd, 31);
  const std::vector<float> k = uniform_data(full.S * full.nkv * full.hd, 32);
  const std::vector<float> v = uniform_data(full.S * full.nkv * full.hd, 33);
  const std::vector<float> batched = run_attention(q, k, v, full, 0.25f);
  const i64 row = full.nh * full.hd;
  for (i64 t = 0; t < full.T; ++t) {
    const std::vector<float> qt(q.begin() + t * row, q.begin() + (t + 1) * row);
    const std::vector<float> step = run_attention(qt, k, v, AttnCase{1, t + 1, full.nh, full.nkv, full.hd, t}, 0.25f);
    // Not the same bits: the batched call runs GEMMs over a tile of queries, the step over one
    // query, and the GEMM kernels may round a row differently with the tile's shape. Both are
    // float32 results within a few u of the exact value: 1e-5 relative (to max|v| = 1, as
    // outputs near 0 have no relative scale of their own).
    for (i64 i = 0; i < row; ++i)
      ASSERT_NEAR(step[i], batched[t * row + i], 1e-5) << "t=" << t << " i=" << i;
  }
}

TEST(OpsAttention, BadArgumentsAndThreadInvariance) {
  const std::vector<float> q = uniform_data(4 * 8 * 8, 1), k = uniform_data(6 * 2 * 8, 2), v = uniform_data(6 * 2 * 8, 3);
  EXPECT_THROW(run_attention(q, k, v, AttnCase{4, 6, 8, 2, 8, 3}, 1.0f), InvalidArgument);   // 3 + 4 > 6
  EXPECT_THROW(run_attention(q, k, v, AttnCase{4, 6, 8, 2, 8, -1}, 1.0f), InvalidArgument);  // negative offset
  EXPECT_THROW(run_attention(q, k, v, AttnCase{4, 6, 8, 3, 8, 0}, 1.0f), InvalidArgument);   // 8 % 3 != 0
  EXPECT_TRUE(run_attention(q, k, v, AttnCase{0, 6, 8, 2, 8, 6}, 1.0f).empty());              // T = 0

  // a few tiles and one key block; then many tiles of unequal cost over several key blocks
  for (const AttnCase& c : {AttnCase{13, 20, 6, 3, 16, 7}, AttnCase{300, 600, 9, 3, 64, 300}}) {
    const std::vector<float> q2 = uniform_data(c.T * c.nh * c.hd, 4), k2 = uniform_data(c.S * c.nkv * c.hd, 5),
                             v2 = uniform_data(c.S * c.nkv * c.hd, 6);
    std::vector<float> out;
    expect_thread_invariant([&] { out = run_attention(q2, k2, v2, c, 0.25f); }, out);
  }
}

TEST(OpsAttention, LaterKeysNeverReachEarlierQueries) {
  // a NaN in key j or value j reaches exactly the queries at positions >= j, also inside one
  // tile (70 queries of one kv head: tiles of 64) and across key blocks (q_offset 250)
  const AttnCase c{70, 320, 3, 1, 8, 250};
  const std::vector<float> q = uniform_data(c.T * c.nh * c.hd, 101);
  for (bool in_value : {false, true}) {
    std::vector<float> k = uniform_data(c.S * c.nkv * c.hd, 102), v = uniform_data(c.S * c.nkv * c.hd, 103);
    const i64 j = 290;
    (in_value ? v : k)[j * c.hd + 3] = kNaN;
    const std::vector<float> out = run_attention(q, k, v, c, 0.5f);
    for (i64 t = 0; t < c.T; ++t)
      for (i64 i = 0; i < c.nh * c.hd; ++i) {
        const bool sees = c.q_offset + t >= j;
        ASSERT_EQ(std::isnan(out[t * c.nh * c.hd + i]), sees && (!in_value || i % c.hd == 3))
            << (in_value ? "value" : "key") << " t=" << t << " i=" << i;
      }
  }
}

TEST(OpsAttention, NonFinitePropagates) {
  std::vector<float> q = uniform_data(2 * 1 * 4, 1), k = uniform_data(2 * 4, 2), v = uniform_data(2 * 4, 3);
  v[5] = kNaN;  // key 1's value: only query 1 reads it
  const std::vector<float> out = run_attention(q, k, v, AttnCase{2, 2, 1, 1, 4, 0}, 1.0f);
  for (int d = 0; d < 4; ++d) EXPECT_FALSE(std::isnan(out[d]));
  EXPECT_TRUE(std::isnan(out[4 + 1]));
}

// ---- silu_mul -------------------------------------------------------------------------

TEST(OpsSiluMul, MatchesDoubleAndSurvivesExtremes) {
  const i64 n = 1001;
  const std::vector<float> g = uniform_data(n, 41, -20.0f, 20.0f), u = uniform_data(n, 42, -3.0f, 3.0f);
  std::vector<float> y(n);
  silu_mul(g.data(), u.data(), n, y.data());
  for (i64 i = 0; i < n; ++i) {
    const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    ASSERT_NEAR(y[i], ref, 4 * kEps32 * std::fabs(ref) + 1e-37) << "g=" << g[i];
  }
  const std::vector<float> ge = {1e30f, -1e30f, kInf, -kInf, -100.0f, 0.0f, -0.0f, kNaN};
  const std::vector<float> ue(ge.size(), 2.0f);
  std::vector<float> ye(ge.size());
  silu_mul(ge.data(), ue.data(), static_cast<i64>(ge.size()), ye.data());
  EXPECT_EQ(ye[0], 2e30f);
  EXPECT_EQ(ye[1], 0.0f);
  EXPECT_EQ(ye[2], kInf);
  EXPECT_EQ(ye[3], 0.0f);
  EXPECT_FALSE(std::isnan(ye[4]));
  EXPECT_EQ(ye[5], 0.0f);
  EXPECT_EQ(ye[6], 0.0f);
  EXPECT_TRUE(std::isnan(ye[7]));
}

TEST(OpsSiluMul, EveryIsaWithinUlpsOfDoubleAndLanesEqualTail) {
  // g over [-100, 100] (both exp regimes, the -87 / 87 limits, the flush to -0 below -87),
  // with its neighbours near 0; u = 1 so y is silu(g) itself.
  std::vector<float> g;
  for (int i = -400000; i <= 400000; ++i) g.push_back(static_cast<float>(i) * 2.5e-4f);
  for (float x : {1e-30f, -1e-30f, 1e-38f, -1e-38f, 86.9f, -86.9f, 87.1f, -87.1f, 88.8f, -88.8f})
    g.push_back(x);
  const i64 n = static_cast<i64>(g.size());
  const std::vector<float> u(g.size(), 1.0f);
  std::vector<float> y(g.size()), y1(1);
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    const ActivationKernels& k = activation_kernels(isa);
    k.silu_mul(g.data(), u.data(), n, y.data());
    double worst = 0.0;
    for (i64 i = 0; i < n; ++i) {
      const double gd = g[i], ref = gd / (1.0 + std::exp(-gd));
      if (g[i] < -87.0f) {  // documented: exp(-|g|) flushes to 0, the result is -0 (truth < 2e-36)
        ASSERT_TRUE(y[i] == 0.0f && std::signbit(y[i])) << isa_name(isa) << " g=" << g[i] << " y=" << y[i];
        continue;
      }
      // exp within ~2 ulp, then a product, a sum and a quotient: a few ulp in all (the floor is
      // one subnormal step, for g = +-1e-38, whose silu g/2 is subnormal)
      const double err = std::fabs(y[i] - ref) / (std::fabs(ref) * kEps32 + 1.4e-45);
      worst = std::max(worst, err);
      ASSERT_LE(err, 4.0) << isa_name(isa) << " g=" << g[i] << " y=" << y[i] << " ref=" << ref;
      if (i % 997 == 0) {  // a lone element runs the scalar tail: the same bits as its lane
        k.silu_mul(&g[i], &u[i], 1, y1.data());
        ASSERT_EQ(float_bits(y1[0]), float_bits(y[i])) << isa_name(isa) << " g=" << g[i];
      }
    }
    std::printf("silu %s: worst error %.2f eps\n", isa_name(isa), worst);
  }
}

TEST(OpsSiluMul, ThreadInvariance) {
  const i64 n = 70000;  // several chunks
  const std::vector<float> g = uniform_data(n, 43, -10.0f, 10.0f), u = uniform_data(n, 44);
  std::vector<float> y(n);
  expect_thread_invariant([&] { silu_mul(g.data(), u.data(), n, y.data()); }, y);
}

// ---- linear ---------------------------------------------------------------------------

namespace {

// |y - ref| <= tol with tol = K-term float32 accumulation bound on sum |x||w| (plus the bias)
void expect_linear_close(const std::vector<float>& y, const std::vector<float>& x, i64 M, i64 K,
                         const AnyMatrixView& W, const float* bias, const char* what) {
  const i64 N = W.rows;
  std::vector<float> wrow(static_cast<std::size_t>(K));
  for (i64 n = 0; n < N; ++n) {
    W.load_row(n, wrow.data());
    for (i64 m = 0; m < M; ++m) {
      double s = 0, mag = 0;
      for (i64 k = 0; k < K; ++k) {
        s += static_cast<double>(x[m * K + k]) * wrow[k];
        mag += std::fabs(static_cast<double>(x[m * K + k]) * wrow[k]);
      }
      if (bias) s += bias[n], mag += std::fabs(bias[n]);
      ASSERT_NEAR(y[m * N + n], s, (K + 2) * kEps32 * mag + 1e-30)
          << what << " M=" << M << " K=" << K << " N=" << N << " at (" << m << ", " << n << ")";
    }
  }
}

}  // namespace

TEST(OpsLinear, Float32AgainstDoubleWithAndWithoutBias) {
  for (i64 K : {1, 3, 577})
    for (i64 N : {1, 33, 130})
      for (i64 M : {1, 7, 300}) {  // 300: two blocks of rows of x
        const std::vector<float> x = uniform_data(M * K, 51 + K), w = uniform_data(N * K, 52 + N);
        const std::vector<float> b = uniform_data(N, 53);
        const AnyMatrixView W(w.data(), N, K);
        std::vector<float> y(static_cast<std::size_t>(M * N));
        linear(x.data(), M, K, W, nullptr, y.data());
        expect_linear_close(y, x, M, K, W, nullptr, "f32");
        linear(x.data(), M, K, W, b.data(), y.data());
        expect_linear_close(y, x, M, K, W, b.data(), "f32+bias");
      }
}

TEST(OpsLinear, WideOutputsUseLargerBlocks) {
  const i64 M = 3, K = 9, N = 4100;  // N >= 4096: the other block size, with a partial block
  const std::vector<float> x = uniform_data(M * K, 54), w = uniform_data(N * K, 55);
  const AnyMatrixView W(w.data(), N, K);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  linear(x.data(), M, K, W, nullptr, y.data());
  expect_linear_close(y, x, M, K, W, nullptr, "f32 wide");
}

TEST(OpsLinear, HalfAndStridedWeights) {
  const i64 M = 5, K = 67, N = 45;
  const std::vector<float> x = uniform_data(M * K, 61);
  const std::vector<float> wf = uniform_data(N * 2 * K, 62);
  std::vector<std::uint16_t> w16(wf.size()), wbf(wf.size());
  for (std::size_t i = 0; i < wf.size(); ++i) w16[i] = fp32_to_fp16(wf[i]), wbf[i] = fp32_to_bf16(wf[i]);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  // contiguous rows, then every other column (col_stride 2), then rows reversed (negative stride)
  struct Layout {
    i64 offset, row_stride, col_stride;
    const char* name;
  };
  for (const Layout& l : {Layout{0, K, 1, "rows"}, Layout{0, 2 * K, 2, "col_stride 2"},
                          Layout{(N - 1) * 2 * K, -2 * K, 1, "reversed rows"}, Layout{0, 2 * K, 1, "padded rows"}}) {
    const AnyMatrixView views[] = {
        AnyMatrixView(wf.data() + l.offset, DType::F32, N, K, l.row_stride, l.col_stride),
        AnyMatrixView(w16.data() + l.offset, DType::F16, N, K, l.row_stride, l.col_stride),
        AnyMatrixView(wbf.data() + l.offset, DType::BF16, N, K, l.row_stride, l.col_stride)};
    for (const AnyMatrixView& W : views) {
      linear(x.data(), M, K, W, nullptr, y.data());
      expect_linear_close(y, x, M, K, W, nullptr, (std::string(l.name) + " " + dtype_name(W.dtype)).c_str());
    }
  }
}

TEST(OpsLinear, EveryIsaAgreesWithTheReference) {
  const i64 K = 131, N = 37;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    const LinearKernels& k = linear_kernels(isa);
    for (i64 M : {1, 2, 19}) {
      const std::vector<float> x = uniform_data(M * K, 71), w = uniform_data(N * K, 72);
      std::vector<float> y(static_cast<std::size_t>(M * (N + 3)), kNaN);
      k.gemm_nt(x.data(), M, K, K, w.data(), N, K, y.data(), N + 3);  // ldy > N: padding untouched
      std::vector<float> yc(static_cast<std::size_t>(M * N));
      for (i64 m = 0; m < M; ++m)
        for (i64 n = 0; n < N; ++n) yc[m * N + n] = y[m * (N + 3) + n];
      for (i64 m = 0; m < M; ++m)
        for (i64 n = N; n < N + 3; ++n) ASSERT_TRUE(std::isnan(y[m * (N + 3) + n]));
      expect_linear_close(yc, x, M, K, AnyMatrixView(w.data(), N, K), nullptr, isa_name(isa));
    }
    // the widening loops: every one of the 65536 bit patterns, bit-exact with half.hpp
    std::vector<std::uint16_t> all(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
    std::vector<float> out(all.size());
    k.widen_f16(all.data(), 65536, out.data());
    for (std::uint32_t i = 0; i < 65536; ++i)
      ASSERT_TRUE(same_bits(out[i], fp16_to_fp32(all[i]))) << isa_name(isa) << " f16 bits 0x" << std::hex << i;
    k.widen_bf16(all.data(), 65536, out.data());
    for (std::uint32_t i = 0; i < 65536; ++i)
      ASSERT_TRUE(same_bits(out[i], bf16_to_fp32(all[i]))) << isa_name(isa) << " bf16 bits 0x" << std::hex << i;
  }
}

TEST(OpsLinear, BadArgumentsEmptyAndThreadInvariance) {
  const std::vector<float> x = uniform_data(2 * 5, 81), w = uniform_data(3 * 4, 82);
  std::vector<float> y(6);
  EXPECT_THROW(linear(x.data(), 2, 5, AnyMatrixView(w.data(), 3, 4), nullptr, y.data()), InvalidArgument);
  linear(nullptr, 0, 4, AnyMatrixView(w.data(), 3, 4), nullptr, nullptr);  // M = 0

  const i64 M = 300, K = 70, N = 200;  // 2 x 7 blocks, f16 weights widened per block
  const std::vector<float> xs = uniform_data(M * K, 83), ws = uniform_data(N * K, 84), b = uniform_data(N, 85);
  std::vector<std::uint16_t> w16(ws.size());
  for (std::size_t i = 0; i < ws.size(); ++i) w16[i] = fp32_to_fp16(ws[i]);
  std::vector<float> out(static_cast<std::size_t>(M * N));
  expect_thread_invariant([&] { linear(xs.data(), M, K, AnyMatrixView(ws.data(), N, K), b.data(), out.data()); }, out);
  expect_thread_invariant(
      [&] { linear(xs.data(), M, K, AnyMatrixView(w16.data(), DType::F16, N, K, K, 1), nullptr, out.data()); }, out);
  expect_thread_invariant([&] { linear(xs.data(), 1, K, AnyMatrixView(ws.data(), N, K), nullptr, out.data()); }, out);
}

TEST(OpsLinear, NonFinitePropagates) {
  std::vector<float> x = {1.0f, kNaN, 2.0f, 3.0f}, w = {1.0f, 1.0f, 1.0f, 1.0f};
  std::vector<float> y(4);
  linear(x.data(), 2, 2, AnyMatrixView(w.data(), 2, 2), nullptr, y.data());
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
  EXPECT_EQ(y[2], 5.0f);
  EXPECT_EQ(y[3], 5.0f);
}

// ---- logits ---------------------------------------------------------------------------

TEST(OpsLogits, TokenLogprobsMatchDoubleLogSoftmax) {
  for (i64 V : {1, 3, 577}) {
    const i64 T = 7;
    const std::vector<float> l = uniform_data(T * V, 91 + V, -30.0f, 30.0f);
    std::vector<std::int64_t> tg(T);
    for (i64 t = 0; t < T; ++t) tg[t] = (t * 131) % V;
    std::vector<double> out(T);
    token_logprobs(l.data(), T, V, tg.data(), out.data());
    for (i64 t = 0; t < T; ++t) {
      const std::vector<double> ref = log_softmax_ref(l.data() + t * V, V);
      EXPECT_NEAR(out[t], ref[tg[t]], 1e-12 * (1 + std::fabs(ref[tg[t]]))) << "V=" << V << " t=" << t;
    }
  }
}

TEST(OpsLogits, TokenLogprobsBadTargetsAndNonFinite) {
  const std::vector<float> l = {0.0f, 1.0f, 2.0f, 0.0f, -kInf, 0.0f, kNaN, 0.0f, 0.0f};
  std::vector<double> out(3);
  std::vector<std::int64_t> bad = {0, 3, 1};
  EXPECT_THROW(token_logprobs(l.data(), 3, 3, bad.data(), out.data()), InvalidArgument);
  bad = {-1, 0, 0};
  EXPECT_THROW(token_logprobs(l.data(), 3, 3, bad.data(), out.data()), InvalidArgument);
  const std::vector<std::int64_t> tg = {2, 1, 0};
  token_logprobs(l.data(), 3, 3, tg.data(), out.data());
  EXPECT_NEAR(out[0], 2.0 - std::log(1 + std::exp(1.0) + std::exp(2.0)), 1e-15);
  EXPECT_EQ(out[1], -std::numeric_limits<double>::infinity());  // a -inf logit: probability 0
  EXPECT_TRUE(std::isnan(out[2]));
  token_logprobs(nullptr, 0, 3, nullptr, nullptr);  // T = 0
}

TEST(OpsLogits, KlDivergenceAgainstDoubleAndArgmax) {
  const i64 T = 7, V = 577;
  const std::vector<float> r = uniform_data(T * V, 101, -8.0f, 8.0f);
  std::vector<float> l = r;
  for (std::size_t i = 0; i < l.size(); ++i) l[i] += 0.3f * std::sin(static_cast<float>(i));
  std::vector<double> kld(T);
  std::vector<std::int64_t> ra(T), la(T);
  kl_divergence(r.data(), r.data(), T, V, kld.data(), ra.data(), la.data());
  for (i64 t = 0; t < T; ++t) EXPECT_EQ(kld[t], 0.0) << "identical logits: exactly 0";
  kl_divergence(r.data(), l.data(), T, V, kld.data(), ra.data(), la.data());
  for (i64 t = 0; t < T; ++t) {
    const std::vector<double> lr = log_softmax_ref(r.data() + t * V, V), ll = log_softmax_ref(l.data() + t * V, V);
    double ref = 0;
    for (i64 j = 0; j < V; ++j) ref += std::exp(lr[j]) * (lr[j] - ll[j]);
    EXPECT_NEAR(kld[t], ref, 1e-12 * ref + 1e-15) << "t=" << t;
    EXPECT_GT(kld[t], 0.0);
    EXPECT_EQ(ra[t], std::max_element(r.begin() + t * V, r.begin() + (t + 1) * V) - (r.begin() + t * V));
    EXPECT_EQ(la[t], std::max_element(l.begin() + t * V, l.begin() + (t + 1) * V) - (l.begin() + t * V));
  }
}

TEST(OpsLogits, KlEdgeCases) {
  // row 0: ties (first index wins) and a -inf reference logit (a 0 * log 0 term);
  // row 1: a -inf model logit where the reference has mass: KL = +inf; row 2: NaN
  const std::vector<float> r = {1.0f, 1.0f, -kInf, 0.0f, 0.0f, 0.0f, 0.0f, kNaN, 1.0f};
  const std::vector<float> l = {0.0f, 2.0f, 2.0f, 0.0f, -kInf, 0.0f, 0.0f, 0.0f, 0.0f};
  std::vector<double> kld(3);
  std::vector<std::int64_t> ra(3), la(3);
  kl_divergence(r.data(), l.data(), 3, 3, kld.data(), ra.data(), la.data());
  const double lz = std::log(std::exp(0.0) + 2 * std::exp(2.0));
  EXPECT_NEAR(kld[0], 0.5 * (std::log(0.5) - (0.0 - lz)) + 0.5 * (std::log(0.5) - (2.0 - lz)), 1e-15);
  EXPECT_EQ(ra[0], 0);
  EXPECT_EQ(la[0], 1);
  EXPECT_EQ(kld[1], std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(kld[2]));
  EXPECT_EQ(ra[2], 1);  // the first NaN, as numpy.argmax
  kl_divergence(r.data(), l.data(), 3, 3, nullptr, nullptr, nullptr);  // outputs optional
}

TEST(OpsLogits, KlTargetLogprobsAreTokenLogprobsBits) {
  // random rows, plus rows with -inf, NaN and ties; with and without the divergence itself
  const i64 V = 577;
  std::vector<float> r = uniform_data(6 * V, 121, -20.0f, 20.0f), l = uniform_data(6 * V, 122, -20.0f, 20.0f);
  r[3 * V + 5] = -kInf;
  l[4 * V + 7] = kNaN;
  r[5 * V + 1] = r[5 * V + 2] = 40.0f;
  const i64 T = static_cast<i64>(r.size()) / V;
  std::vector<std::int64_t> tg = {0, 576, 300, 5, 7, 2};
  std::vector<double> want_r(T), want_l(T), got_r(T), got_l(T), kld(T), kld_alone(T);
  token_logprobs(r.data(), T, V, tg.data(), want_r.data());
  token_logprobs(l.data(), T, V, tg.data(), want_l.data());
  for (double* k : {kld.data(), static_cast<double*>(nullptr)}) {
    std::fill(got_r.begin(), got_r.end(), 1.0);
    std::fill(got_l.begin(), got_l.end(), 1.0);
    kl_divergence(r.data(), l.data(), T, V, k, nullptr, nullptr, tg.data(), got_r.data(), got_l.data());
    for (i64 t = 0; t < T; ++t) {
      EXPECT_TRUE(same_bits(got_r[t], want_r[t])) << "t=" << t << " " << got_r[t] << " vs " << want_r[t];
      EXPECT_TRUE(same_bits(got_l[t], want_l[t])) << "t=" << t << " " << got_l[t] << " vs " << want_l[t];
    }
  }
  kl_divergence(r.data(), l.data(), T, V, kld_alone.data(), nullptr, nullptr);
  for (i64 t = 0; t < T; ++t) EXPECT_TRUE(same_bits(kld[t], kld_alone[t])) << "t=" << t;
  tg[4] = V;
  EXPECT_THROW(kl_divergence(r.data(), l.data(), T, V, nullptr, nullptr, nullptr, tg.data(), got_r.data(), nullptr),
               InvalidArgument);
}

TEST(OpsLogits, EveryIsaRowSumsMatchLongDouble) {
  // the kernels' double exp polynomial and 8-lane sums against long double, on rows wide and
  // narrow (all-tail V < 8, V = 8, a tail after whole blocks), with -inf logits (terms of 0)
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    const LogitsKernels& k = logits_kernels(isa);
    for (i64 V : {1, 7, 8, 9, 577, 49152}) {
      std::vector<float> r = uniform_data(V, 131 + V, -40.0f, 15.0f), l = uniform_data(V, 132 + V, -40.0f, 15.0f);
      if (V > 3) r[2] = l[2] = r[3] = -kInf;  // a 0 * log 0 term, and a 0 reference weight
      const float mr = *std::max_element(r.begin(), r.end()), ml = *std::max_element(l.begin(), l.end());
      long double sr = 0, sl = 0;
      for (i64 j = 0; j < V; ++j) {
        sr += std::exp(static_cast<long double>(r[j]) - mr);
        sl += std::exp(static_cast<long double>(l[j]) - ml);
      }
      const double got_sr = k.sum_exp_shifted(r.data(), V, mr), got_sl = k.sum_exp_shifted(l.data(), V, ml);
      // a few ulp per term, then V additions of positive terms: relative error <= (4 + V) eps
      EXPECT_NEAR(got_sr, static_cast<double>(sr), (4.0 + V) * 1.2e-16 * static_cast<double>(sr))
          << isa_name(isa) << " V=" << V;
      EXPECT_NEAR(got_sl, static_cast<double>(sl), (4.0 + V) * 1.2e-16 * static_cast<double>(sl));
      const long double lr = std::log(sr), ll = std::log(sl);
      long double kl = 0, mass = 0;
      for (i64 j = 0; j < V; ++j) {
        const long double p = std::exp(static_cast<long double>(r[j]) - mr - lr);
        if (p == 0) continue;
        const long double d = (static_cast<long double>(r[j]) - mr - lr) - (static_cast<long double>(l[j]) - ml - ll);
        kl += p * d;
        mass += p * std::fabs(d);
      }
      const double got_kl = k.kl_sum(r.data(), l.data(), V, mr, std::log(got_sr), ml, std::log(got_sl)) / got_sr;
      // relative to sum p |d| (the terms have both signs), plus the logs' own rounding
      EXPECT_NEAR(got_kl, static_cast<double>(kl), (8.0 + V) * 1.2e-16 * static_cast<double>(mass) + 1e-15)
          << isa_name(isa) << " V=" << V;
    }
  }
}

TEST(OpsLogits, EveryIsaArgmaxIsNumpysArgmax) {
  // first index on ties, first NaN if any; ties, NaN, +-inf placed in the first block, in
  // the middle and in the tail, on widths around the 8-lane blocks
  const auto numpy_argmax = [](const std::vector<float>& r) {
    i64 best = 0;
    for (i64 j = 0; j < static_cast<i64>(r.size()); ++j) {
      if (std::isnan(r[j])) return j;
      if (r[j] > r[best]) best = j;
    }
    return best;
  };
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    const LogitsKernels& k = logits_kernels(isa);
    for (i64 V : {1, 2, 7, 8, 9, 15, 16, 17, 100, 1001}) {
      for (int pattern = 0; pattern < 9; ++pattern) {
        std::vector<float> r = uniform_data(V, 141 + V + pattern, -3.0f, 3.0f);
        const i64 a = V / 3, b = V - 1;
        switch (pattern) {
          case 1: r[a] = r[b] = 9.0f; break;                               // a tie: the first wins
          case 2: r.assign(static_cast<std::size_t>(V), -kInf); break;    // all -inf: index 0
          case 3: r[b] = kNaN; break;                                       // NaN in the tail
          case 4: r[a] = kNaN; r[b] = kNaN; break;                          // the first NaN
          case 5: r[b] = kInf; r[a] = kInf; break;
          case 6: r.assign(static_cast<std::size_t>(V), 1.0f); break;     // all equal: index 0
          case 7: r[0] = kNaN; break;
          case 8: for (float& x : r) x = std::round(x); break;             // many ties
          default: break;
        }
        EXPECT_EQ(k.argmax(r.data(), V), numpy_argmax(r)) << isa_name(isa) << " V=" << V << " pattern " << pattern;
      }
    }
  }
}

TEST(OpsLogits, ThreadInvariance) {
  const i64 T = 9, V = 1000;
  const std::vector<float> r = uniform_data(T * V, 111, -5.0f, 5.0f), l = uniform_data(T * V, 112, -5.0f, 5.0f);
  std::vector<std::int64_t> tg(T, 17);
  std::vector<double> out(T);
  expect_thread_invariant([&] { token_logprobs(l.data(), T, V, tg.data(), out.data()); }, out);
  expect_thread_invariant([&] { kl_divergence(r.data(), l.data(), T, V, out.data(), nullptr, nullptr); }, out);
}
