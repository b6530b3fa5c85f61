// measure_int8_peak (lowbit/int8_peak.hpp): the best int8 dot instruction this CPU and build
// have, timed on every thread.
#include "lowbit/int8_peak.hpp"

#include <chrono>
#include <vector>

#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

struct Probe {
  Int8PeakLoop loop = nullptr;
  const char* instruction = "";
};

Probe best_probe() {
#if defined(LOWBIT_HAVE_X86_KERNELS)
  const CpuFeatures& f = cpu_features();
  if (isa_supported(Isa::Avx512) && f.avx512vnni) return {avx512::int8_peak_loop_vnni, "vpdpbusd zmm (AVX-512 VNNI)"};
  if (isa_supported(Isa::Avx2)) return {avx2::int8_peak_loop, "vpmaddubsw+vpmaddwd+vpaddd ymm (AVX2)"};
#endif
  throw Unsupported("measure_int8_peak: no int8 dot-product probe for this CPU/build (x86 AVX2 or AVX-512 VNNI)");
}

}  // namespace

Int8Peak measure_int8_peak(double seconds) {
  LOWBIT_CHECK(seconds > 0 && seconds <= 60, "seconds must be in (0, 60], got ", seconds);
  const Probe p = best_probe();
  const int n = get_num_threads();
  std::int32_t sink = 0;
  // Calibrate the per-thread iteration count on one thread (~1/10 of the time), then run all.
  std::int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    p.loop(iters, &sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 10 || iters > (std::int64_t{1} << 40)) {
      iters = static_cast<std::int64_t>(static_cast<double>(iters) * seconds / dt) + 1;
      break;
    }
    iters *= 4;
  }
  std::vector<std::int64_t> macs(static_cast<std::size_t>(n));
  std::vector<std::int32_t> sinks(static_cast<std::size_t>(n));
  const auto t0 = std::chrono::steady_clock::now();
  parallel_for(n, [&](i64 t) { macs[static_cast<std::size_t>(t)] = p.loop(iters, &sinks[static_cast<std::size_t>(t)]); }, 1);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0;
  for (std::int64_t m : macs) total += static_cast<double>(m);
  return Int8Peak{2 * total / dt / 1e9, p.instruction, n};
}

}  // namespace lowbit
