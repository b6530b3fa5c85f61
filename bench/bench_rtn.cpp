// Google Benchmark: RTN quantization and grouped dequantization per ISA path.
// Run: build/bench/bench_rtn   (bytes/s = float32 input bytes processed per second)
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "lowbit/grouped_int.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/rtn.hpp"

using namespace lowbit;

namespace {

std::vector<float> make_weights(i64 n) {
  std::vector<float> w(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) w[static_cast<std::size_t>(i)] = 0.1f + 2.0f * std::cos(static_cast<float>(i));
  return w;
}

void BM_rtn(benchmark::State& st) {
  const Isa isa = static_cast<Isa>(st.range(0));
  if (!isa_supported(isa)) {
    st.SkipWithError("ISA not supported here");
    return;
  }
  force_isa(isa);
  set_num_threads(static_cast<int>(st.range(1)));
  const i64 rows = 4096, cols = 4096;
  const std::vector<float> w = make_weights(rows * cols);
  const RtnParams p{4, 128, true};
  const AnyMatrixView W(w.data(), rows, cols);
  const GroupedIntShape s = rtn_output_shape(W, p);
  std::vector<std::uint8_t> qw(static_cast<std::size_t>(rows * s.row_bytes()));
  std::vector<float> sc(static_cast<std::size_t>(rows * s.n_groups()));
  std::vector<std::uint8_t> zs(sc.size());
  for (auto _ : st) {
    rtn_quantize(W, p, GroupedIntMutView{s, qw.data(), sc.data(), zs.data()});
    benchmark::DoNotOptimize(qw.data());
  }
  st.SetBytesProcessed(st.iterations() * rows * cols * 4);
  st.SetLabel(std::string(isa_name(isa)) + " threads=" + std::to_string(st.range(1)));
  set_num_threads(0);
}

}  // namespace

BENCHMARK(BM_rtn)->ArgsProduct({{0, 1, 2}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
