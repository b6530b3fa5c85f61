// The inner kernel of lowbit::attention, written once and compiled once per ISA. Each
// kernels/<isa>/attention.cpp defines, before including this file:
//   #define Eigen lowbit_eigen_attention_<isa>   (a private copy of Eigen: no cross-ISA symbol mixing)
//   #define LOWBIT_ATTENTION_NS <isa>            (the namespace of the exported table)
// Eigen's own threading is off: lowbit::attention hands whole tiles to its threads.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "lowbit/ops.hpp"
#include "exp_poly.hpp"

namespace lowbit::LOWBIT_ATTENTION_NS {

namespace {

using MatRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<MatRM, 0, Eigen::OuterStride<>>;
using CMapRM = Eigen::Map<const MatRM, 0, Eigen::OuterStride<>>;
using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;

// s[j] = exp(s[j] - m) for j < n; returns their sum, in eight interleaved partial sums (a
// fixed order that the compiler vectorises).
float exp_and_sum(float* s, i64 n, float m) {
  for (i64 j = 0; j < n; ++j) s[j] = exp_nonpositive(s[j] - m);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) acc[l] += s[j + l];
  float tail = 0.0f;
  for (; j < n; ++j) tail += s[j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// One tile (see AttentionKernels::tile): the n_q queries t0.. of the `group` query heads that
// share kv head g, stacked as rows r = i * group + j (query t0 + i, head g * group + j), walk
// the keys in blocks with an online softmax (flash attention): per row a running maximum m,
// a running sum l of exp(score - m), and the running output acc = sum exp(score - m) v, all
// three rescaled by exp(m_old - m_new) when a block raises the maximum.
void tile(const AttentionArgs& a, i64 g, i64 t0, i64 n_q, i64 key_block, float* out) {
  const i64 hd = a.head_dim, nh = a.n_heads, group = nh / a.n_kv_heads, R = n_q * group;
  const i64 p0 = a.q_offset + t0;  // position of the tile's first query; query i sees keys 0..p0+i
  const i64 n_keys = p0 + n_q;     // keys seen by the last query
  const i64 kb = std::min(key_block, n_keys), ld = (kb + 15) / 16 * 16;  // rows of scores start 64-byte aligned

  // thread_local: fresh buffers per tile would be allocations (and page faults) each time
  thread_local Buffer q_buf, s_buf, o_buf;
  thread_local std::vector<float> m, l;
  q_buf.resize(static_cast<std::size_t>(R * hd));
  s_buf.resize(static_cast<std::size_t>(R * ld));
  o_buf.assign(static_cast<std::size_t>(R * hd), 0.0f);
  m.assign(static_cast<std::size_t>(R), -INFINITY);
  l.assign(static_cast<std::size_t>(R), 0.0f);

  // the tile's queries times scale (the group heads of one query are contiguous in q)
  for (i64 i = 0; i < n_q; ++i) {
    const float* src = a.q + ((t0 + i) * nh + g * group) * hd;
    float* dst = q_buf.data() + i * group * hd;
    for (i64 d = 0; d < group * hd; ++d) dst[d] = a.scale * src[d];
  }
  const CMapRM Q(q_buf.data(), R, hd, Eigen::OuterStride<>(hd));
  MapRM O(o_buf.data(), R, hd, Eigen::OuterStride<>(hd));

  for (i64 k0 = 0; k0 < n_keys; k0 += kb) {
    const i64 nk = std::min(kb, n_keys - k0);
    const CMapRM K(a.k.data + k0 * a.k.stride_s + g * a.k.stride_h, nk, hd, Eigen::OuterStride<>(a.k.stride_s));
    const CMapRM V(a.v.data + k0 * a.v.stride_s + g * a.v.stride_h, nk, hd, Eigen::OuterStride<>(a.v.stride_s));
    MapRM P(s_buf.data(), R, nk, Eigen::OuterStride<>(ld));
    P.noalias() = Q * K.transpose();  // scores; keys a row may not see are computed, never read
    // keys of this block that row r sees: the first `visible(r)`; all rows see the first n_all
    auto visible = [&](i64 r) { return std::clamp<i64>(p0 + r / group + 1 - k0, 0, nk); };
    const i64 n_all = visible(0);
    for (i64 r = 0; r < R; ++r) {
      const i64 n = visible(r);
      if (n == 0) continue;
      const float mb = P.row(r).head(n).maxCoeff();
      if (mb > m[r]) {  // a new maximum: rescale what was summed so far (by 0 at the first block)
        const float alpha = std::exp(m[r] - mb);
        l[r] *= alpha;
        O.row(r) *= alpha;
        m[r] = mb;
      }
      l[r] += exp_and_sum(&P(r, 0), n, m[r]);  // scores -> weights, in place
    }
    // acc += weights . V. Only the keys a row sees are read: a row's unseen weights are not
    // zeroed but skipped, so a NaN/inf in a later position's value cannot reach it (0 * NaN).
    if (n_all > 0) O.noalias() += P.leftCols(n_all) * V.topRows(n_all);
    for (i64 r = 0; r < R; ++r) {
      const i64 n = visible(r);
      if (n > n_all) O.row(r).noalias() += P.row(r).segment(n_all, n - n_all) * V.middleRows(n_all, n - n_all);
    }
  }

  for (i64 r = 0; r < R; ++r) {
    float* o = out + ((t0 + r / group) * nh + g * group + r % group) * hd;
    for (i64 d = 0; d < hd; ++d) o[d] = O(r, d) / l[r];
  }
}

}  // namespace

const AttentionKernels kAttentionKernels = {tile};

}  // namespace lowbit::LOWBIT_ATTENTION_NS
