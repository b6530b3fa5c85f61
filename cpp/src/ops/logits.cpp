// Per-token scores of a row of logits: log-probabilities of targets, KL divergence between
// two models' distributions, and the argmax (top-1 agreement). All in double.
#include <cmath>
#include <vector>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// Largest logit of a row (its first index on ties); the first NaN wins, as in numpy.argmax.
i64 row_argmax(const float* r, i64 V) {
  i64 best = 0;
  for (i64 j = 0; j < V; ++j) {
    if (std::isnan(r[j])) return j;
    if (r[j] > r[best]) best = j;
  }
  return best;
}

// log sum_j exp(r[j] - m) for m = max_j r[j]. exp(r - m) <= 1: no overflow; the sum is >= 1
// so its log is well conditioned. NaN or +inf in the row makes it NaN (inf - inf).
double log_sum_exp_shifted(const float* r, i64 V, double m) {
  double s = 0.0;
  for (i64 j = 0; j < V; ++j) s += std::exp(static_cast<double>(r[j]) - m);
  return std::log(s);
}

void check_targets(const char* fn, const std::int64_t* targets, i64 T, i64 V) {
  for (i64 t = 0; t < T; ++t)
    LOWBIT_CHECK(targets[t] >= 0 && targets[t] < V, fn, ": targets[", t, "] = ", targets[t],
                 " is outside the vocabulary [0, ", V, ")");
}

}  // namespace

void token_logprobs(const float* logits, i64 T, i64 V, const std::int64_t* targets, double* out) {
  LOWBIT_CHECK(T >= 0 && V >= 1, "token_logprobs: logits must be [T, V] with V >= 1, got T=", T, " V=", V);
  check_targets("token_logprobs", targets, T, V);
  parallel_for(
      T,
      [&](i64 t) {
        const float* r = logits + t * V;
        const double m = r[row_argmax(r, V)];
        out[t] = (static_cast<double>(r[targets[t]]) - m) - log_sum_exp_shifted(r, V, m);
      },
      min_rows_per_thread(V, 4096));
}

void kl_divergence(const float* ref_logits, const float* logits, i64 T, i64 V, double* kld,
                   std::int64_t* ref_argmax, std::int64_t* argmax, const std::int64_t* targets, double* ref_logprob,
                   double* logprob) {
  LOWBIT_CHECK(T >= 0 && V >= 1, "kl_divergence: logits must be [T, V] with V >= 1, got T=", T, " V=", V);
  const bool scores = targets != nullptr && (ref_logprob != nullptr || logprob != nullptr);
  if (scores) check_targets("kl_divergence", targets, T, V);
  parallel_for(
      T,
      [&](i64 t) {
        const float* r = ref_logits + t * V;
        const float* l = logits + t * V;
        const i64 ar = row_argmax(r, V), al = row_argmax(l, V);
        if (ref_argmax != nullptr) ref_argmax[t] = ar;
        if (argmax != nullptr) argmax[t] = al;
        if (kld == nullptr && !scores) return;
        const double mr = r[ar], ml = l[al];
        // e[j] = exp(r[j] - mr) kept for the sum below: p_ref[j] = e[j] / sr
        thread_local std::vector<double> e;
        e.resize(static_cast<std::size_t>(V));
        double sr = 0.0;
        for (i64 j = 0; j < V; ++j) {
          e[static_cast<std::size_t>(j)] = std::exp(static_cast<double>(r[j]) - mr);
          sr += e[static_cast<std::size_t>(j)];
        }
        // the same sums, in the same order, as token_logprobs: its bits exactly
        const double lr = std::log(sr), ll = log_sum_exp_shifted(l, V, ml);
        if (scores) {
          if (ref_logprob != nullptr) ref_logprob[t] = (static_cast<double>(r[targets[t]]) - mr) - lr;
          if (logprob != nullptr) logprob[t] = (static_cast<double>(l[targets[t]]) - ml) - ll;
        }
        if (kld == nullptr) return;
        // sum_j e[j] (log p_ref[j] - log p[j]) / sr; equal rows give exactly 0 term by term
        double acc = 0.0;
        for (i64 j = 0; j < V; ++j) {
          const double ej = e[static_cast<std::size_t>(j)];
          if (ej == 0.0) continue;  // 0 * log 0 = 0 (a -inf reference logit, or an underflow)
          const double log_pr = (static_cast<double>(r[j]) - mr) - lr;
          const double log_p = (static_cast<double>(l[j]) - ml) - ll;
          acc += ej * (log_pr - log_p);
        }
        kld[t] = (std::isnan(lr) || std::isnan(ll)) ? NAN : acc / sr;
      },
      min_rows_per_thread(V, 4096));
}

}  // namespace lowbit
