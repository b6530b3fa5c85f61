// Per-token scores of a row of logits: log-probabilities of targets, KL divergence between
// two models' distributions, and the argmax (top-1 agreement). The row sums run in the
// active ISA's LogitsKernels (a double exp polynomial, sums in fixed lanes:
// kernels/logits_impl.hpp); everything is in double.
#include <cmath>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

void check_targets(const char* fn, const std::int64_t* targets, i64 T, i64 V) {
  for (i64 t = 0; t < T; ++t)
    LOWBIT_CHECK(targets[t] >= 0 && targets[t] < V, fn, ": targets[", t, "] = ", targets[t],
                 " is outside the vocabulary [0, ", V, ")");
}

}  // namespace

void token_logprobs(const float* logits, i64 T, i64 V, const std::int64_t* targets, double* out) {
  LOWBIT_CHECK(T >= 0 && V >= 1, "token_logprobs: logits must be [T, V] with V >= 1, got T=", T, " V=", V);
  check_targets("token_logprobs", targets, T, V);
  const LogitsKernels& k = logits_kernels();
  parallel_for(
      T,
      [&](i64 t) {
        const float* r = logits + t * V;
        const float m = r[k.argmax(r, V)];
        // log of a sum >= 1 (the maximum's term is 1): well conditioned; NaN or +inf in the row
        // makes it NaN (inf - inf)
        const double lse = std::log(k.sum_exp_shifted(r, V, m));
        out[t] = (static_cast<double>(r[targets[t]]) - static_cast<double>(m)) - lse;
      },
      min_rows_per_thread(V, 4096));
}

void kl_divergence(const float* ref_logits, const float* logits, i64 T, i64 V, double* kld,
                   std::int64_t* ref_argmax, std::int64_t* argmax, const std::int64_t* targets, double* ref_logprob,
                   double* logprob) {
  LOWBIT_CHECK(T >= 0 && V >= 1, "kl_divergence: logits must be [T, V] with V >= 1, got T=", T, " V=", V);
  const bool scores = targets != nullptr && (ref_logprob != nullptr || logprob != nullptr);
  if (scores) check_targets("kl_divergence", targets, T, V);
  const LogitsKernels& k = logits_kernels();
  parallel_for(
      T,
      [&](i64 t) {
        const float* r = ref_logits + t * V;
        const float* l = logits + t * V;
        const i64 ar = k.argmax(r, V), al = k.argmax(l, V);
        if (ref_argmax != nullptr) ref_argmax[t] = ar;
        if (argmax != nullptr) argmax[t] = al;
        if (kld == nullptr && !scores) return;
        const float mr = r[ar], ml = l[al];
        // the same sums, in the same order, as token_logprobs: its bits exactly
        const double sr = k.sum_exp_shifted(r, V, mr);
        const double lr = std::log(sr), ll = std::log(k.sum_exp_shifted(l, V, ml));
        if (scores) {
          if (ref_logprob != nullptr) ref_logprob[t] = (static_cast<double>(r[targets[t]]) - static_cast<double>(mr)) - lr;
          if (logprob != nullptr) logprob[t] = (static_cast<double>(l[targets[t]]) - static_cast<double>(ml)) - ll;
        }
        if (kld == nullptr) return;
        kld[t] = (std::isnan(lr) || std::isnan(ll)) ? NAN : k.kl_sum(r, l, V, mr, lr, ml, ll) / sr;
      },
      min_rows_per_thread(V, 4096));
}

}  // namespace lowbit
