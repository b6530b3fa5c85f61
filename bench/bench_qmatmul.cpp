// Google Benchmark: the quantized matmul kernels on 4096 x 4096 weights (active ISA), next to
// the machine baselines measured in the same run: read bandwidth (BM_stream_read) and the int8
// dot instruction peak (BM_int8_peak). bench/bench_kernels.py prints the full table with ratios
// and llama.cpp as the peer; this binary is for profiling and quick checks from C++.
//   BM_grouped: int4 g128 asym (lowbit's grouped layout), act int8 blocks
//   BM_grouped_shape: grouped int (asym) at small models' prefill shapes, 3 and 4 bits (nibble
//               kernel), 8 bits (byte kernel: per group and per channel); x_sgemm = time of
//               lowbit's float32 linear on that shape / time of the quantized kernel, same run
//   BM_ggml:    GGUF q4_0 / q8_0 / q4_K blocks (llama.cpp's activation rounding)
// Weights cycle through >= 256 MB of distinct copies (decode is then a cache-cold stream).
// Arguments: M (1 = decode, 512 = prefill), threads.
// Run: build/bench/bench_qmatmul [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "lowbit/format_table.hpp"
#include "lowbit/ggml_qmatmul.hpp"
#include "lowbit/int8_peak.hpp"
#include "lowbit/matrix_view.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/qmatmul.hpp"
#include "lowbit/rtn.hpp"

using namespace lowbit;

namespace {

constexpr i64 kN = 4096, kK = 4096;
constexpr i64 kWorkingSet = 256 << 20;

std::vector<float> wave(i64 n, float freq, float amp) {
  std::vector<float> x(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = amp * std::sin(freq * static_cast<float>(i) + 0.3f);
  return x;
}

const std::vector<float>& weights() {
  static const std::vector<float> w = wave(kN * kK, 0.0137f, 0.05f);
  return w;
}

// Times product(x, *packs[i], y) over copies made by prepare() until >= kWorkingSet bytes;
// counters: GOP/s, and weight bytes/s at decode.
template <class Prepare, class Product>
void run_cycling(benchmark::State& st, i64 M, Prepare prepare, Product product) {
  std::vector<decltype(prepare())> packs;
  do packs.push_back(prepare());
  while (static_cast<i64>(packs.size()) * packs[0]->nbytes() < kWorkingSet);
  const std::vector<float> x = wave(M * kK, 0.71f, 2.0f);
  std::vector<float> y(static_cast<std::size_t>(M * kN));
  std::size_t i = 0;
  for (auto _ : st) {
    product(x.data(), *packs[i++ % packs.size()], y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GOP/s"] = benchmark::Counter(2.0 * static_cast<double>(M * kN * kK), benchmark::Counter::kIsIterationInvariantRate);
  if (M == 1) st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * packs[0]->nbytes());
}

// range(0): M, range(1): threads
void BM_grouped(benchmark::State& st) {
  const i64 M = st.range(0);
  set_num_threads(static_cast<int>(st.range(1)));
  const RtnParams p{4, 128, false};
  const GroupedIntShape s = make_grouped_shape(4, kN, kK, 128);
  std::vector<std::uint8_t> qw(static_cast<std::size_t>(kN * s.row_bytes())), zs(static_cast<std::size_t>(kN * s.n_groups()));
  std::vector<float> sc(zs.size());
  rtn_quantize(AnyMatrixView(weights().data(), kN, kK), p, GroupedIntMutView{s, qw.data(), sc.data(), zs.data()});
  run_cycling(st, M, [&] { return prepare_grouped(GroupedIntConstView{s, qw.data(), sc.data(), zs.data(), nullptr}); },
              [&](const float* x, const PackedWeights& w, float* y) {
                qmatmul(x, ActDType::F32, M, kK, w, QActMode::Q8Block, y);
              });
  set_num_threads(0);
}

// range(0): N, range(1): K, range(2): M, range(3): threads, range(4): bits, range(5): group
// size (K: per channel). Small models' shapes (SmolLM2-135M: hidden 576, MLP 1536) at prefill,
// where per-output costs weigh more than at 4096 x 4096.
void BM_grouped_shape(benchmark::State& st) {
  const i64 N = st.range(0), K = st.range(1), M = st.range(2);
  const int bits = static_cast<int>(st.range(4));
  const i64 gs = st.range(5);
  set_num_threads(static_cast<int>(st.range(3)));
  const RtnParams p{bits, gs, false};
  const GroupedIntShape s = make_grouped_shape(bits, N, K, gs);
  const std::vector<float> w = wave(N * K, 0.0137f, 0.05f), x = wave(M * K, 0.71f, 2.0f);
  std::vector<std::uint8_t> qw(static_cast<std::size_t>(N * s.row_bytes())), zs(static_cast<std::size_t>(N * s.n_groups()));
  std::vector<float> sc(zs.size()), y(static_cast<std::size_t>(M * N));
  rtn_quantize(AnyMatrixView(w.data(), N, K), p, GroupedIntMutView{s, qw.data(), sc.data(), zs.data()});
  const auto packed = prepare_grouped(GroupedIntConstView{s, qw.data(), sc.data(), zs.data(), nullptr});
  for (auto _ : st) {
    qmatmul(x.data(), ActDType::F32, M, K, *packed, QActMode::Q8Block, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GOP/s"] = benchmark::Counter(2.0 * static_cast<double>(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
  // baseline in the same run: lowbit's float32 linear (SGEMM) on the same shape, as many times
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (benchmark::IterationCount it = 0; it < st.iterations(); ++it) {
    linear(x.data(), M, K, AnyMatrixView(w.data(), N, K), nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double sgemm_s = std::chrono::duration<double>(clock::now() - t0).count();
  const auto t1 = clock::now();
  for (benchmark::IterationCount it = 0; it < st.iterations(); ++it) {
    qmatmul(x.data(), ActDType::F32, M, K, *packed, QActMode::Q8Block, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["x_sgemm"] = sgemm_s / std::chrono::duration<double>(clock::now() - t1).count();
  set_num_threads(0);
}

// range(0): QType id, range(1): M, range(2): threads
void BM_ggml(benchmark::State& st) {
  const QType t = static_cast<QType>(st.range(0));
  const i64 M = st.range(1);
  set_num_threads(static_cast<int>(st.range(2)));
  st.SetLabel(traits(t).name);
  const i64 rb = row_size(t, kK);
  std::vector<std::uint8_t> blocks(static_cast<std::size_t>(kN * rb));
  for (i64 r = 0; r < kN; ++r)
    traits(t).from_float_ref(weights().data() + r * kK, blocks.data() + r * rb, kK, nullptr);
  run_cycling(st, M, [&] { return prepare_ggml(t, blocks.data(), kN, kK); },
              [&](const float* x, const GgmlPackedWeights& w, float* y) {
                ggml_qmatmul(x, ActDType::F32, M, kK, w, QActMode::Q8Block, y);
              });
  set_num_threads(0);
}

// range(0): threads. The read-bandwidth baseline of the decode rows.
void BM_stream_read(benchmark::State& st) {
  set_num_threads(static_cast<int>(st.range(0)));
  std::vector<std::uint64_t> buf(static_cast<std::size_t>(kWorkingSet / 8), 1);
  constexpr i64 kChunk = 1 << 17;  // words per task, fixed
  const i64 n = static_cast<i64>(buf.size()), n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<std::uint64_t> part(static_cast<std::size_t>(n_chunks));
  for (auto _ : st) {
    parallel_for(n_chunks, [&](i64 c) {
      std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const i64 b = c * kChunk, e = std::min(n, b + kChunk);
      i64 j = b;
      for (; j + 4 <= e; j += 4) {
        s0 += buf[static_cast<std::size_t>(j)];
        s1 += buf[static_cast<std::size_t>(j + 1)];
        s2 += buf[static_cast<std::size_t>(j + 2)];
        s3 += buf[static_cast<std::size_t>(j + 3)];
      }
      for (; j < e; ++j) s0 += buf[static_cast<std::size_t>(j)];
      part[static_cast<std::size_t>(c)] = s0 + s1 + s2 + s3;
    });
    benchmark::DoNotOptimize(part.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * kWorkingSet);
  set_num_threads(0);
}

// range(0): threads. The int8 dot instruction peak (lowbit/int8_peak.hpp) of the prefill rows.
void BM_int8_peak(benchmark::State& st) {
  set_num_threads(static_cast<int>(st.range(0)));
  Int8Peak p;
  for (auto _ : st) p = measure_int8_peak(0.1);
  st.counters["GOP/s"] = p.gops;
  st.SetLabel(p.instruction);
  set_num_threads(0);
}

}  // namespace

BENCHMARK(BM_stream_read)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_int8_peak)->Arg(1)->Arg(2)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_grouped)->ArgsProduct({{1, 512}, {1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_grouped_shape)
    ->ArgsProduct({{1536}, {576}, {2048}, {1}, {4, 3, 8}, {128}})
    ->ArgsProduct({{576}, {1536}, {2048}, {1}, {4, 3, 8}, {128}})
    ->ArgsProduct({{4096}, {4096}, {512}, {1}, {4, 8}, {128}})
    ->ArgsProduct({{4096}, {4096}, {512}, {1}, {4, 8}, {32}})
    ->ArgsProduct({{4096}, {4096}, {512}, {1}, {8}, {4096}})
    ->ArgsProduct({{1536}, {4608}, {256}, {1}, {4}, {128}})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ggml)
    ->ArgsProduct({{static_cast<int>(QType::Q4_0), static_cast<int>(QType::Q8_0), static_cast<int>(QType::Q4_K)}, {1, 512}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
