// Google Benchmark: the dense kernels behind GPTQ and the statistics pass (active ISA).
// Rates are reported as FLOP/s of the textbook flop counts (n^3/3 for Cholesky and for the
// triangular inverse, T*n^2 for the lower-triangle SYRK).
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "lowbit/gptq.hpp"
#include "lowbit/linalg.hpp"
#include "lowbit/parallel.hpp"

using namespace lowbit;

namespace {

std::vector<float> spd(i64 n) {
  std::vector<float> X(static_cast<std::size_t>(2 * n * n));
  for (std::size_t i = 0; i < X.size(); ++i) X[i] = std::cos(static_cast<float>(i) * 0.7f) + 0.01f * static_cast<float>(i % 7);
  std::vector<float> H(static_cast<std::size_t>(n * n), 0.0f);
  linalg_kernels().syrk_lower_f32(X.data(), 2 * n, n, n, 1.0f / static_cast<float>(n), 0.0f, H.data());
  for (i64 i = 0; i < n; ++i) H[static_cast<std::size_t>(i * n + i)] += 1.0f;
  return H;
}

void BM_cholesky(benchmark::State& st) {
  const i64 n = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  const std::vector<float> H = spd(n);
  for (auto _ : st) {
    std::vector<float> A = H;
    if (!linalg_kernels().cholesky_lower(A.data(), n)) st.SkipWithError("not SPD");
  }
  st.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(n) * n * n / 3.0, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

void BM_invert_lower(benchmark::State& st) {
  const i64 n = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  std::vector<float> L = spd(n);
  linalg_kernels().cholesky_lower(L.data(), n);
  for (auto _ : st) {
    std::vector<float> A = L;
    linalg_kernels().invert_lower(A.data(), n);
  }
  st.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(n) * n * n / 3.0, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

void BM_syrk(benchmark::State& st) {
  const i64 n = st.range(0), T = 2048;
  set_num_threads(static_cast<int>(st.range(1)));
  std::vector<float> X(static_cast<std::size_t>(T * n));
  for (std::size_t i = 0; i < X.size(); ++i) X[i] = std::sin(static_cast<float>(i));
  std::vector<float> H(static_cast<std::size_t>(n * n), 0.0f);
  for (auto _ : st) linalg_kernels().syrk_lower_f32(X.data(), T, n, n, 1.0f, 1.0f, H.data());
  st.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(T) * n * n, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

void BM_gptq(benchmark::State& st) {
  const i64 n = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  const std::vector<float> H = spd(n);
  std::vector<float> W(static_cast<std::size_t>(n * n));
  for (std::size_t i = 0; i < W.size(); ++i) W[i] = 0.02f * std::sin(static_cast<float>(i) * 1.3f);
  GptqParams p;
  p.compute_objective = false;
  const GroupedIntShape s = gptq_output_shape(n, n, p);
  std::vector<std::uint8_t> qw(static_cast<std::size_t>(n * s.row_bytes())), zs(static_cast<std::size_t>(n * s.n_groups()));
  std::vector<float> sc(zs.size());
  std::vector<std::int32_t> g(static_cast<std::size_t>(n));
  for (auto _ : st)
    gptq_quantize(AnyMatrixView(W.data(), n, n), H.data(), n, n, p, GroupedIntMutView{s, qw.data(), sc.data(), zs.data()},
                  g.data());
  set_num_threads(0);
}

}  // namespace

BENCHMARK(BM_gptq)->ArgsProduct({{4096}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_cholesky)->ArgsProduct({{1024, 4096}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_invert_lower)->ArgsProduct({{1024, 4096}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_syrk)->ArgsProduct({{4096}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
