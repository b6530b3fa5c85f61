// The Llama decoder's layer loop in C++: what python/lowbit/models/llama.py's LlamaModel.forward
// does from the embedded tokens to the logits, without a Python call per op.
//
// Why: a decode step of a small model is ~200 linear calls plus norms, RoPE and attention; from
// Python each costs a few microseconds of interpreter and binding overhead, a large share of a
// step that streams only ~100 MB of weights. The Python path stays the reference: this loop
// calls the same ops (rms_norm, the layers' matmul kernels, rope_inplace, attention, silu_mul)
// on the same inputs in the same order, so its logits and KV cache are bit-identical to it.
#pragma once

#include <functional>
#include <vector>

#include "lowbit/common.hpp"

namespace lowbit {

// One linear layer as the loop calls it: y [M, rows] = x [M, cols] . W^T, then + bias.
struct LinearOp {
  i64 rows = 0, cols = 0;
  std::function<void(const float* x, i64 M, float* y)> apply;  // x rows contiguous (ld = cols)
  const float* bias = nullptr;                                  // [rows] or none; owned by the caller
};

struct LlamaBlock {
  const float* input_norm = nullptr;  // [hidden], owned by the caller
  const float* post_norm = nullptr;
  LinearOp q, k, v, o, gate, up, down;
};

struct LlamaShape {
  i64 hidden = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float rms_eps = 1e-5f;
  std::vector<float> inv_freq;  // [head_dim / 2]
  bool rope_interleaved = false;
  float attention_scaling = 1.0f;
};

// The caller's KV cache: k, v float32 [n_layers, max_len, n_kv_heads, head_dim], C-contiguous.
struct KvCacheRef {
  float* k = nullptr;
  float* v = nullptr;
  i64 max_len = 0;
};

class LlamaRuntime {
 public:
  // Checks that the layers' shapes chain (InvalidArgument naming the first that does not).
  LlamaRuntime(LlamaShape shape, std::vector<LlamaBlock> blocks, const float* final_norm, LinearOp head);

  i64 n_layers() const { return static_cast<i64>(blocks_.size()); }
  i64 vocab() const { return head_.rows; }
  const LlamaShape& shape() const { return shape_; }

  // x: the embedded tokens [T, hidden] at positions start .. start + T - 1; overwritten (the
  // hidden state). With a cache, keys/values are written at those positions and attention
  // reads positions 0 .. start + T - 1 from it; without one, start must be 0. Writes logits
  // [last_only ? 1 : T, vocab].
  void forward(float* x, i64 T, i64 start, const KvCacheRef* cache, bool last_only, float* logits) const;

 private:
  LlamaShape shape_;
  std::vector<LlamaBlock> blocks_;
  const float* final_norm_;
  LinearOp head_;
};

}  // namespace lowbit
