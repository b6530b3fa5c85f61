// Causal grouped-query attention over a (prefix of a) KV cache.
#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// q . k in float32 with eight fixed partial sums: a fixed order the compiler can vectorise
// (a single running sum would serialise on the add latency).
inline float dot(const float* a, const float* b, i64 n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Queries per work item (see below). A block's output rows (kQueryBlock x head_dim floats)
// and one key/value row stay in L1 while the block walks the keys.
constexpr i64 kQueryBlock = 8;

}  // namespace

void attention(const AttentionArgs& a, float* out) {
  LOWBIT_CHECK(a.T >= 0 && a.n_heads >= 1 && a.head_dim >= 1,
               "attention: q must be [T, n_heads, head_dim] with n_heads, head_dim >= 1, got T=", a.T,
               " n_heads=", a.n_heads, " head_dim=", a.head_dim);
  LOWBIT_CHECK(a.n_kv_heads >= 1 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads=", a.n_heads,
               " must be a multiple of n_kv_heads=", a.n_kv_heads);
  LOWBIT_CHECK(a.q_offset >= 0 && a.q_offset + a.T <= a.S, "attention: the ", a.T, " queries at positions ",
               a.q_offset, "..", a.q_offset + a.T - 1, " need keys up to there, but S=", a.S,
               " (require 0 <= q_offset and q_offset + T <= S)");
  const i64 hd = a.head_dim, group = a.n_heads / a.n_kv_heads;
  // One item per (head, block of kQueryBlock consecutive queries): each key and value row is
  // loaded once for the whole block (from L2, not once per query), while every query still
  // does exactly the operations it would do alone, so decoding token by token gives the same
  // bits as one batched call. Later blocks see more keys: items are handed out dynamically.
  const i64 n_blocks = (a.T + kQueryBlock - 1) / kQueryBlock;
  parallel_for_dynamic(n_blocks * a.n_heads, [&](i64 item) {
    const i64 h = item % a.n_heads, t0 = (item / a.n_heads) * kQueryBlock;
    const i64 nq = std::min(kQueryBlock, a.T - t0);
    const i64 n_max = a.q_offset + t0 + nq;  // keys seen by the block's last query
    const float* kg = a.k.data + (h / group) * a.k.stride_h;
    const float* vg = a.v.data + (h / group) * a.v.stride_h;
    auto q_row = [&](i64 i) { return a.q + ((t0 + i) * a.n_heads + h) * hd; };
    auto out_row = [&](i64 i) { return out + ((t0 + i) * a.n_heads + h) * hd; };
    auto n_keys = [&](i64 i) { return a.q_offset + t0 + i + 1; };  // query t0+i sees keys 0..pos

    thread_local std::vector<float> scores;  // [nq, n_max]
    scores.resize(static_cast<std::size_t>(nq * n_max));
    float* sc = scores.data();
    for (i64 j = 0; j < n_max; ++j) {
      const float* kj = kg + j * a.k.stride_s;
      for (i64 i = 0; i < nq; ++i)
        if (j < n_keys(i)) sc[i * n_max + j] = dot(q_row(i), kj, hd) * a.scale;
    }
    // softmax per query with the max subtracted: every exponent <= 0, nothing overflows
    float inv_sum[kQueryBlock];
    for (i64 i = 0; i < nq; ++i) {
      float* si = sc + i * n_max;
      const i64 n = n_keys(i);
      float mx = -INFINITY;
      for (i64 j = 0; j < n; ++j) mx = std::max(mx, si[j]);
      double sum = 0.0;
      for (i64 j = 0; j < n; ++j) {
        si[j] = std::exp(si[j] - mx);
        sum += si[j];
      }
      inv_sum[i] = static_cast<float>(1.0 / sum);
      std::fill(out_row(i), out_row(i) + hd, 0.0f);
    }
    for (i64 j = 0; j < n_max; ++j) {
      const float* vj = vg + j * a.v.stride_s;
      for (i64 i = 0; i < nq; ++i) {
        if (j >= n_keys(i)) continue;
        const float w = sc[i * n_max + j];
        float* o = out_row(i);
        for (i64 d = 0; d < hd; ++d) o[d] += w * vj[d];
      }
    }
    for (i64 i = 0; i < nq; ++i) {
      float* o = out_row(i);
      for (i64 d = 0; d < hd; ++d) o[d] *= inv_sum[i];
    }
  });
}

}  // namespace lowbit
