// Google Benchmark: the heavy model ops at SmolLM2-135M shapes (active ISA), so the op speeds
// quoted in commits can be reproduced.
//   attention: n_heads 9, n_kv_heads 3, head_dim 64; prefill T = S = 2048 (q_offset 0) and
//              decode T = 1 against S = 2048 cached keys. FLOP/s counts 2 * 2 * nh * hd per
//              (query, key) pair actually attended (the causal triangle for prefill).
//   linear:    x [M, 576] @ W^T, W [N, 576] float32, M = 1 (decode) and 512 (prefill chunk),
//              N = 1536 (MLP gate/up) and 49152 (the tied LM head).
//   silu_mul:  gate, up [T, 1536], T = 1 (decode) and 2048; counter x_libm = time of the same
//              loop with libm's expf (g / (1 + expf(-g)), the formula silu_mul replaces) over
//              time of silu_mul, both measured in this run, one thread.
//   kl scores: one evaluation chunk of logits, 256 tokens x 49152 (SmolLM2's vocabulary): KL
//              divergence, argmaxes and both models' target log-probabilities in one call
//              (kl_divergence with targets); counter x_libm = time of the previous way, written
//              here (libm's double exp per logit; the divergence and each model's log-probs in
//              separate passes), over that time, both in this run, one thread.
// Second argument: the thread count.
// Run: build/bench/bench_ops [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

using namespace lowbit;

namespace {

std::vector<float> wave(i64 n, float freq, float amp) {
  std::vector<float> x(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = amp * std::sin(freq * static_cast<float>(i) + 0.3f);
  return x;
}

constexpr i64 kHeads = 9, kKvHeads = 3, kHeadDim = 64;

// range(0): T (queries), range(1): threads; S = 2048 keys, the queries are the last T positions
void BM_attention(benchmark::State& st) {
  const i64 T = st.range(0), S = 2048;
  set_num_threads(static_cast<int>(st.range(1)));
  const std::vector<float> q = wave(T * kHeads * kHeadDim, 0.37f, 2.0f);
  const std::vector<float> k = wave(S * kKvHeads * kHeadDim, 0.71f, 2.0f);
  const std::vector<float> v = wave(S * kKvHeads * kHeadDim, 1.13f, 1.0f);
  std::vector<float> out(static_cast<std::size_t>(T * kHeads * kHeadDim));
  AttentionArgs a;
  a.q = q.data();
  a.T = T;
  a.n_heads = kHeads;
  a.head_dim = kHeadDim;
  a.k = KvView{k.data(), kKvHeads * kHeadDim, kHeadDim};
  a.v = KvView{v.data(), kKvHeads * kHeadDim, kHeadDim};
  a.S = S;
  a.n_kv_heads = kKvHeads;
  a.q_offset = S - T;
  a.scale = 0.125f;
  for (auto _ : st) {
    attention(a, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  // keys attended: sum over queries of (q_offset + t + 1)
  const double pairs = static_cast<double>(T) * static_cast<double>(S - T) + 0.5 * static_cast<double>(T) * (T + 1);
  st.counters["FLOP/s"] = benchmark::Counter(4.0 * kHeads * kHeadDim * pairs, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

// range(0): M, range(1): N, range(2): threads; K = 576
void BM_linear(benchmark::State& st) {
  const i64 M = st.range(0), N = st.range(1), K = 576;
  set_num_threads(static_cast<int>(st.range(2)));
  const std::vector<float> x = wave(M * K, 0.37f, 1.0f), W = wave(N * K, 0.71f, 0.05f);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  const AnyMatrixView wv(W.data(), N, K);
  for (auto _ : st) {
    linear(x.data(), M, K, wv, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

// range(0): T; one thread
void BM_silu_mul(benchmark::State& st) {
  const i64 n = st.range(0) * 1536;
  set_num_threads(1);
  const std::vector<float> g = wave(n, 0.37f, 6.0f), u = wave(n, 0.71f, 1.0f);
  std::vector<float> y(static_cast<std::size_t>(n));
  for (auto _ : st) {
    silu_mul(g.data(), u.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (benchmark::IterationCount it = 0; it < st.iterations(); ++it) {
    for (i64 i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    benchmark::DoNotOptimize(y.data());
  }
  const double libm_s = std::chrono::duration<double>(clock::now() - t0).count();
  const auto t1 = clock::now();
  for (benchmark::IterationCount it = 0; it < st.iterations(); ++it) {
    silu_mul(g.data(), u.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["x_libm"] = libm_s / std::chrono::duration<double>(clock::now() - t1).count();
  st.counters["elem/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

// The previous implementation, kept here as the baseline: libm exp in double, one pass per score.
double libm_lse(const float* r, i64 V, double m) {
  double s = 0.0;
  for (i64 j = 0; j < V; ++j) s += std::exp(static_cast<double>(r[j]) - m);
  return std::log(s);
}

i64 first_argmax(const float* r, i64 V) {
  i64 best = 0;
  for (i64 j = 0; j < V; ++j) {
    if (std::isnan(r[j])) return j;
    if (r[j] > r[best]) best = j;
  }
  return best;
}

void libm_scores(const float* rl, const float* ll, i64 T, i64 V, const std::int64_t* tg, double* kld, double* lpr,
                 double* lpl, std::vector<double>& e) {
  for (i64 t = 0; t < T; ++t) {
    const float *r = rl + t * V, *l = ll + t * V;
    const double mr = r[first_argmax(r, V)], ml = l[first_argmax(l, V)];
    double sr = 0.0;
    for (i64 j = 0; j < V; ++j) sr += (e[static_cast<std::size_t>(j)] = std::exp(static_cast<double>(r[j]) - mr));
    const double lr = std::log(sr), lz = libm_lse(l, V, ml);
    double acc = 0.0;
    for (i64 j = 0; j < V; ++j)
      if (e[static_cast<std::size_t>(j)] != 0.0)
        acc += e[static_cast<std::size_t>(j)] * (((r[j] - mr) - lr) - ((l[j] - ml) - lz));
    kld[t] = acc / sr;
  }
  for (i64 t = 0; t < T; ++t) {  // token_logprobs of each model: their own passes
    const float *r = rl + t * V, *l = ll + t * V;
    const double mr = r[first_argmax(r, V)], ml = l[first_argmax(l, V)];
    lpr[t] = (r[tg[t]] - mr) - libm_lse(r, V, mr);
    lpl[t] = (l[tg[t]] - ml) - libm_lse(l, V, ml);
  }
}

// 256 x 49152 logits; one thread
void BM_kl_scores(benchmark::State& st) {
  const i64 T = 256, V = 49152;
  set_num_threads(1);
  const std::vector<float> r = wave(T * V, 0.37f, 6.0f), l = wave(T * V, 0.3701f, 6.1f);
  std::vector<std::int64_t> tg(static_cast<std::size_t>(T));
  for (i64 t = 0; t < T; ++t) tg[static_cast<std::size_t>(t)] = (t * 7919) % V;
  std::vector<double> kld(static_cast<std::size_t>(T)), lr(kld.size()), ll(kld.size()), e(static_cast<std::size_t>(V));
  std::vector<std::int64_t> ar(tg.size()), al(tg.size());
  const auto fused = [&] {
    kl_divergence(r.data(), l.data(), T, V, kld.data(), ar.data(), al.data(), tg.data(), lr.data(), ll.data());
  };
  for (auto _ : st) {
    fused();
    benchmark::DoNotOptimize(kld.data());
  }
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (benchmark::IterationCount it = 0; it < st.iterations(); ++it) {
    libm_scores(r.data(), l.data(), T, V, tg.data(), kld.data(), lr.data(), ll.data(), e);
    benchmark::DoNotOptimize(kld.data());
  }
  const double libm_s = std::chrono::duration<double>(clock::now() - t0).count();
  const auto t1 = clock::now();
  for (benchmark::IterationCount it = 0; it < st.iterations(); ++it) {
    fused();
    benchmark::DoNotOptimize(kld.data());
  }
  st.counters["x_libm"] = libm_s / std::chrono::duration<double>(clock::now() - t1).count();
  st.counters["logits/s"] = benchmark::Counter(static_cast<double>(T * V), benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

}  // namespace

BENCHMARK(BM_attention)->ArgsProduct({{2048, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_linear)->ArgsProduct({{1, 512}, {1536, 49152}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_silu_mul)->Arg(1)->Arg(2048)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_kl_scores)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
