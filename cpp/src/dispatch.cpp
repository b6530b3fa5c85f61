// Chooses the kernel table once: LOWBIT_ISA if set (and runnable), else the best ISA.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "lowbit/common.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/linalg.hpp"

namespace lowbit {

namespace {

std::atomic<int> g_active{-1};
std::once_flag g_init;

Isa initial_isa() {
  const char* env = std::getenv("LOWBIT_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  const Isa want = parse_isa(env);
  if (!isa_supported(want))
    throw Unsupported(str_cat("LOWBIT_ISA=", env, " is not supported by this CPU/build (best: ",
                              isa_name(best_isa()), ")"));
  return want;
}

}  // namespace

Isa active_isa() {
  std::call_once(g_init, [] {
    if (g_active.load() < 0) g_active.store(static_cast<int>(initial_isa()));
  });
  return static_cast<Isa>(g_active.load());
}

void force_isa(Isa isa) {
  if (!isa_supported(isa))
    throw Unsupported(str_cat("ISA '", isa_name(isa), "' is not supported by this CPU/build (best: ",
                              isa_name(best_isa()), ")"));
  // The one-time initialisation only fills g_active while it is unset, so this sticks.
  g_active.store(static_cast<int>(isa));
}

const GridKernels& grid_kernels(Isa isa) {
  if (!isa_supported(isa))
    throw Unsupported(str_cat("no '", isa_name(isa), "' kernels on this CPU/build"));
  switch (isa) {
#ifdef LOWBIT_HAVE_X86_KERNELS
    case Isa::Avx512: return avx512::kGridKernels;
    case Isa::Avx2: return avx2::kGridKernels;
#endif
    default: return scalar::kGridKernels;
  }
}

const GridKernels& grid_kernels() { return grid_kernels(active_isa()); }

const LinalgKernels& linalg_kernels(Isa isa) {
  if (!isa_supported(isa))
    throw Unsupported(str_cat("no '", isa_name(isa), "' kernels on this CPU/build"));
  switch (isa) {
#ifdef LOWBIT_HAVE_X86_KERNELS
    case Isa::Avx512: return avx512::kLinalgKernels;
    case Isa::Avx2: return avx2::kLinalgKernels;
#endif
    default: return scalar::kLinalgKernels;
  }
}

const LinalgKernels& linalg_kernels() { return linalg_kernels(active_isa()); }

}  // namespace lowbit
