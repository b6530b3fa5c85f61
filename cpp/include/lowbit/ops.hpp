// The model ops of the Llama-family runtime: one call per heavy step of a decoder layer
// (Python runs the layer loop). Each op's comment here is its definition.
//
// All buffers are row-major float32 unless stated otherwise; outputs do not alias inputs
// (except rope_inplace). Work is split over independent outputs only (rows, heads, query
// positions, blocks of output columns), each computed by one thread in a fixed order, so
// results are bit-identical for any thread count.
//
// Non-finite values: rms_norm, rope, attention, silu_mul and linear propagate NaN/inf the way
// IEEE arithmetic does (no checks, no errors). token_logprobs and kl_divergence return NaN for
// a row that holds a NaN or +inf logit; -inf logits are fine (probability zero).
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"
#include "lowbit/cpu_features.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

// y[m, :] = x[m, :] * r_m * weight,  r_m = 1 / sqrt(mean_d(x[m, d]^2) + eps).
// Rounded as Hugging Face's LlamaRMSNorm in float32: the mean of squares becomes a float32
// (accumulated in double, so it is the nearly exact mean), eps is added in float32, r_m is
// the float32 rounding of the exact reciprocal square root, then (x * r_m) * weight in float32.
// x, y: [M, D]; weight: [D]. D >= 1, M >= 0.
void rms_norm(const float* x, i64 M, i64 D, const float* weight, float eps, float* y);

// Rotary position embedding, in place on x [T, H, head_dim]. For row t and pair i < head_dim/2:
//   angle = float32(float32(positions[t]) * inv_freq[i]),
//   c = float32(cos(angle)) * attention_scaling,  s = float32(sin(angle)) * attention_scaling
// (cos/sin evaluated in double on the float32 angle, then rounded), and the pair (a, b) becomes
//   (a * c - b * s,  b * c + a * s).
// interleaved: pairs are (x[2i], x[2i+1]) (llama2.c, GGUF, Meta checkpoints);
// otherwise (x[i], x[i + head_dim/2]) (Hugging Face's rotate_half). head_dim even, >= 2.
void rope_inplace(float* x, i64 T, i64 H, i64 head_dim, const std::int64_t* positions,
                  const float* inv_freq, bool interleaved, float attention_scaling);

// Keys or values [S, n_kv_heads, head_dim] with the head_dim axis contiguous: element
// (s, g, d) at data[s * stride_s + g * stride_h + d]. A prefix of a preallocated KV cache
// (cache[:S]) is such a view.
struct KvView {
  const float* data = nullptr;
  i64 stride_s = 0, stride_h = 0;
};

// Causal grouped-query attention.
// q: [T, n_heads, head_dim] contiguous; k, v: [S, n_kv_heads, head_dim] views;
// out: [T, n_heads * head_dim] contiguous. Query t sits at position p = q_offset + t and
// attends to keys 0..p; query head h reads kv head h / (n_heads / n_kv_heads):
//   w_j = softmax_j(scale * q[t, h] . k[j, g]),  out[t, h*hd:(h+1)*hd] = sum_j w_j v[j, g].
// Computed in float32 as tiles of queries x blocks of keys (GEMMs of the active ISA) with an
// online softmax: exponentials of scores minus the running row maximum (never above 1, so
// nothing overflows; below e^-87 of the maximum they are 0). Keys past a query's position are
// never read for it (a NaN there does not reach it). Tile and key-block sizes depend on the
// shapes only, so results are the same bits for any thread count, but a query's result may
// differ in the last bits between calls with different T (decode vs a batched prefill).
// Requires q_offset >= 0, q_offset + T <= S, n_heads % n_kv_heads == 0.
struct AttentionArgs {
  const float* q = nullptr;
  i64 T = 0, n_heads = 0, head_dim = 0;
  KvView k, v;
  i64 S = 0, n_kv_heads = 0;
  i64 q_offset = 0;
  float scale = 1.0f;
};
void attention(const AttentionArgs& a, float* out);

// y[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)) (Hugging Face's formula), in float32
// within a few ulp, by a vectorised exp (kernels/activation_impl.hpp). silu(-inf) = -0 (the
// formula would give -inf/inf = NaN); silu(g < -87) = -0. n elements.
void silu_mul(const float* gate, const float* up, i64 n, float* y);

// y [M, N] = x [M, K] @ W^T + bias, W: [N, K] float32 / float16 / bfloat16, any strides;
// bias: [N] or nullptr. Blocks of output columns (and of rows of x when M is large) are
// independent single-threaded GEMMs of the active ISA (Eigen); half-precision weights are
// widened to float32 block by block. Accumulation order depends on the block sizes and the
// ISA, never on the thread count.
void linear(const float* x, i64 M, i64 K, const AnyMatrixView& W, const float* bias, float* y);

// out[t] = log_softmax(logits[t, :])[targets[t]], in double from the float32 logits.
// logits: [T, V]; targets: [T] in [0, V) (InvalidArgument naming the first bad index).
void token_logprobs(const float* logits, i64 T, i64 V, const std::int64_t* targets, double* out);

// Per row t: kld[t] = KL(P_ref || P) = sum_v p_ref[v] (log p_ref[v] - log p[v]) with
// P_ref = softmax(ref_logits[t]), P = softmax(logits[t]) (double; terms with p_ref = 0 are 0),
// ref_argmax[t] / argmax[t] = index of the row's largest logit (the first one on ties; the
// first NaN if the row has one, as numpy.argmax). With targets ([T] in [0, V)), also
// ref_logprob[t] / logprob[t] = token_logprobs of both rows, bit-identical to it but sharing
// the row's log-sum-exp with the divergence (an evaluation then exponentiates each logit once,
// not twice). Any output pointer may be nullptr.
void kl_divergence(const float* ref_logits, const float* logits, i64 T, i64 V, double* kld,
                   std::int64_t* ref_argmax, std::int64_t* argmax, const std::int64_t* targets = nullptr,
                   double* ref_logprob = nullptr, double* logprob = nullptr);

// The per-ISA inner kernels of linear (kernels/<isa>/linear.cpp).
struct LinearKernels {
  // y[m, n] = sum_k x[m, k] * w[n, k] for m < M, n < N (overwrites y). Row strides ldx, ldw,
  // ldy (elements); all rows contiguous.
  void (*gemm_nt)(const float* x, i64 M, i64 K, i64 ldx, const float* w, i64 N, i64 ldw, float* y,
                  i64 ldy);
  // dst[i] = the float32 value of the half / bfloat16 bit pattern src[i] (bit-exact with
  // fp16_to_fp32 / bf16_to_fp32 of half.hpp, written so the compiler vectorises it).
  void (*widen_f16)(const std::uint16_t* src, i64 n, float* dst);
  void (*widen_bf16)(const std::uint16_t* src, i64 n, float* dst);
};

const LinearKernels& linear_kernels();         // active ISA
const LinearKernels& linear_kernels(Isa isa);  // a specific one (tests); Unsupported if absent

namespace scalar { extern const LinearKernels kLinearKernels; }
namespace avx2 { extern const LinearKernels kLinearKernels; }
namespace avx512 { extern const LinearKernels kLinearKernels; }

// The per-ISA inner kernel of attention (kernels/<isa>/attention.cpp).
struct AttentionKernels {
  // One tile: the n_q queries t0..t0+n_q-1 of the query heads that share kv head g, over all
  // the keys they see in blocks of key_block (absolute positions 0, key_block, ...); writes
  // those rows' [head_dim] slices of out. The arguments are valid (attention() checked them).
  void (*tile)(const AttentionArgs& a, i64 g, i64 t0, i64 n_q, i64 key_block, float* out);
};

const AttentionKernels& attention_kernels();         // active ISA
const AttentionKernels& attention_kernels(Isa isa);  // a specific one (tests); Unsupported if absent

namespace scalar { extern const AttentionKernels kAttentionKernels; }
namespace avx2 { extern const AttentionKernels kAttentionKernels; }
namespace avx512 { extern const AttentionKernels kAttentionKernels; }

// The per-ISA elementwise activations (kernels/<isa>/activation.cpp).
struct ActivationKernels {
  // y[i] = silu(gate[i]) * up[i] for i < n, one thread (silu_mul splits the work).
  void (*silu_mul)(const float* gate, const float* up, i64 n, float* y);
};

const ActivationKernels& activation_kernels();         // active ISA
const ActivationKernels& activation_kernels(Isa isa);  // a specific one (tests); Unsupported if absent

namespace scalar { extern const ActivationKernels kActivationKernels; }
namespace avx2 { extern const ActivationKernels kActivationKernels; }
namespace avx512 { extern const ActivationKernels kActivationKernels; }

// The per-ISA row sums of token_logprobs and kl_divergence (kernels/<isa>/logits.cpp); the
// definition (double exp polynomial, sums in 8 striped lanes) is in kernels/logits_impl.hpp.
struct LogitsKernels {
  // index of the row's largest logit: the first one on ties, the first NaN if any (numpy.argmax)
  i64 (*argmax)(const float* r, i64 V);
  // sum_j exp(r[j] - m); m = the row's largest logit makes every term <= 1.
  double (*sum_exp_shifted)(const float* r, i64 V, float m);
  // sum_j exp(r[j] - mr) ((r[j] - mr - lr) - (l[j] - ml - ll)), terms with exp(r[j] - mr) = 0
  // counting 0: divided by sum_exp_shifted(r, V, mr) it is KL(softmax(r) || softmax(l)).
  double (*kl_sum)(const float* r, const float* l, i64 V, float mr, double lr, float ml, double ll);
};

const LogitsKernels& logits_kernels();         // active ISA
const LogitsKernels& logits_kernels(Isa isa);  // a specific one (tests); Unsupported if absent

namespace scalar { extern const LogitsKernels kLogitsKernels; }
namespace avx2 { extern const LogitsKernels kLogitsKernels; }
namespace avx512 { extern const LogitsKernels kLogitsKernels; }

}  // namespace lowbit
