// The Llama layer loop (lowbit/llama_runtime.hpp). Each step mirrors a line of
// LlamaModel.block / attention_heads / mlp / head in python/lowbit/models/llama.py.
#include "lowbit/llama_runtime.hpp"

#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "lowbit/ops.hpp"

namespace lowbit {

namespace {

void check_linear(const LinearOp& op, const char* name, i64 layer, i64 rows, i64 cols) {
  LOWBIT_CHECK(static_cast<bool>(op.apply), "layer ", layer, " ", name, ": no kernel");
  LOWBIT_CHECK(op.rows == rows && op.cols == cols, "layer ", layer, " ", name, " must be [", rows, ", ", cols,
               "], got [", op.rows, ", ", op.cols, "]");
}

// y = op(x) (+ bias), as LlamaModel.linear: the product, then the bias added in float32.
void run_linear(const LinearOp& op, const float* x, i64 M, std::vector<float>& y) {
  y.resize(static_cast<std::size_t>(M * op.rows));
  op.apply(x, M, y.data());
  if (op.bias != nullptr)
    for (i64 m = 0; m < M; ++m)
      for (i64 r = 0; r < op.rows; ++r) y[static_cast<std::size_t>(m * op.rows + r)] += op.bias[r];
}

void add_inplace(float* x, const std::vector<float>& d) {
  for (std::size_t i = 0; i < d.size(); ++i) x[i] = x[i] + d[i];
}

}  // namespace

LlamaRuntime::LlamaRuntime(LlamaShape shape, std::vector<LlamaBlock> blocks, const float* final_norm, LinearOp head)
    : shape_(std::move(shape)), blocks_(std::move(blocks)), final_norm_(final_norm), head_(std::move(head)) {
  const LlamaShape& s = shape_;
  LOWBIT_CHECK(s.hidden > 0 && s.n_heads > 0 && s.n_kv_heads > 0 && s.head_dim > 0 && s.head_dim % 2 == 0 &&
                   s.n_heads % s.n_kv_heads == 0,
               "bad shape: hidden=", s.hidden, " n_heads=", s.n_heads, " n_kv_heads=", s.n_kv_heads,
               " head_dim=", s.head_dim);
  LOWBIT_CHECK(static_cast<i64>(s.inv_freq.size()) == s.head_dim / 2, "inv_freq must have head_dim / 2 = ",
               s.head_dim / 2, " entries, got ", s.inv_freq.size());
  LOWBIT_CHECK(final_norm_ != nullptr, "final_norm is required");
  const i64 qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
  for (i64 i = 0; i < n_layers(); ++i) {
    const LlamaBlock& b = blocks_[static_cast<std::size_t>(i)];
    LOWBIT_CHECK(b.input_norm != nullptr && b.post_norm != nullptr, "layer ", i, ": norms are required");
    check_linear(b.q, "q_proj", i, qd, s.hidden);
    check_linear(b.k, "k_proj", i, kvd, s.hidden);
    check_linear(b.v, "v_proj", i, kvd, s.hidden);
    check_linear(b.o, "o_proj", i, s.hidden, qd);
    check_linear(b.gate, "gate_proj", i, b.gate.rows, s.hidden);
    check_linear(b.up, "up_proj", i, b.gate.rows, s.hidden);
    check_linear(b.down, "down_proj", i, s.hidden, b.gate.rows);
  }
  check_linear(head_, "lm_head", -1, head_.rows, s.hidden);
}

void LlamaRuntime::forward(float* x, i64 T, i64 start, const KvCacheRef* cache, bool last_only, float* logits) const {
  const LlamaShape& s = shape_;
  LOWBIT_CHECK(T > 0, "tokens must not be empty");
  LOWBIT_CHECK(start >= 0, "start must be >= 0, got ", start);
  if (cache != nullptr)
    LOWBIT_CHECK(start + T <= cache->max_len, "sequence of ", start + T, " tokens exceeds the KV cache (",
                 cache->max_len, ")");
  else
    LOWBIT_CHECK(start == 0, "positions must start at 0 without a KV cache");
  const i64 D = s.hidden, H = s.n_heads, KV = s.n_kv_heads, hd = s.head_dim, end = start + T;
  std::vector<std::int64_t> positions(static_cast<std::size_t>(T));
  std::iota(positions.begin(), positions.end(), static_cast<std::int64_t>(start));
  std::vector<float> h(static_cast<std::size_t>(T * D)), q, k, v, att(static_cast<std::size_t>(T * H * hd)), y, g,
      u, act;
  for (i64 i = 0; i < n_layers(); ++i) {
    const LlamaBlock& b = blocks_[static_cast<std::size_t>(i)];
    // attention sub-layer
    rms_norm(x, T, D, b.input_norm, s.rms_eps, h.data());
    run_linear(b.q, h.data(), T, q);
    run_linear(b.k, h.data(), T, k);
    run_linear(b.v, h.data(), T, v);
    rope_inplace(q.data(), T, H, hd, positions.data(), s.inv_freq.data(), s.rope_interleaved, s.attention_scaling);
    rope_inplace(k.data(), T, KV, hd, positions.data(), s.inv_freq.data(), s.rope_interleaved, s.attention_scaling);
    AttentionArgs a;
    a.q = q.data();
    a.T = T;
    a.n_heads = H;
    a.head_dim = hd;
    a.n_kv_heads = KV;
    a.q_offset = start;
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    if (cache != nullptr) {
      const i64 layer_off = i * cache->max_len * KV * hd;
      float* kc = cache->k + layer_off;
      float* vc = cache->v + layer_off;
      std::memcpy(kc + start * KV * hd, k.data(), k.size() * sizeof(float));
      std::memcpy(vc + start * KV * hd, v.data(), v.size() * sizeof(float));
      a.k = KvView{kc, KV * hd, hd};
      a.v = KvView{vc, KV * hd, hd};
      a.S = end;
    } else {
      a.k = KvView{k.data(), KV * hd, hd};
      a.v = KvView{v.data(), KV * hd, hd};
      a.S = T;
    }
    attention(a, att.data());
    run_linear(b.o, att.data(), T, y);
    add_inplace(x, y);
    // MLP sub-layer
    rms_norm(x, T, D, b.post_norm, s.rms_eps, h.data());
    run_linear(b.gate, h.data(), T, g);
    run_linear(b.up, h.data(), T, u);
    act.resize(g.size());
    silu_mul(g.data(), u.data(), static_cast<i64>(g.size()), act.data());
    run_linear(b.down, act.data(), T, y);
    add_inplace(x, y);
  }
  const float* xs = last_only ? x + (T - 1) * D : x;
  const i64 n = last_only ? 1 : T;
  rms_norm(xs, n, D, final_norm_, s.rms_eps, h.data());
  head_.apply(h.data(), n, logits);
  if (head_.bias != nullptr)
    for (i64 m = 0; m < n; ++m)
      for (i64 r = 0; r < head_.rows; ++r) logits[m * head_.rows + r] += head_.bias[r];
}

}  // namespace lowbit
