// Chooses the kernel table once: LOWBIT_ISA if set (and runnable), else the best ISA.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "lowbit/common.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/linalg.hpp"
#include "lowbit/ops.hpp"

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

// The table of `isa` among one kernel family's per-ISA tables.
template <class Table>
const Table& pick(Isa isa, const Table& scalar_t, const Table& avx2_t, const Table& avx512_t) {
  if (!isa_supported(isa))
    throw Unsupported(str_cat("no '", isa_name(isa), "' kernels on this CPU/build"));
  switch (isa) {
    case Isa::Avx512: return avx512_t;
    case Isa::Avx2: return avx2_t;
    default: return scalar_t;
  }
}

// A family's per-ISA tables; without x86 kernels only the scalar one exists (and
// isa_supported() rejects the others before pick() would return it). Isa::Neon has no
// tables of its own in these families: pick() gives it the scalar ones.
#ifdef LOWBIT_HAVE_X86_KERNELS
#define LOWBIT_ISA_TABLES(name) scalar::name, avx2::name, avx512::name
#else
#define LOWBIT_ISA_TABLES(name) scalar::name, scalar::name, scalar::name
#endif

const GridKernels& grid_kernels(Isa isa) { return pick(isa, LOWBIT_ISA_TABLES(kGridKernels)); }
const LinalgKernels& linalg_kernels(Isa isa) { return pick(isa, LOWBIT_ISA_TABLES(kLinalgKernels)); }
const LinearKernels& linear_kernels(Isa isa) { return pick(isa, LOWBIT_ISA_TABLES(kLinearKernels)); }
const AttentionKernels& attention_kernels(Isa isa) { return pick(isa, LOWBIT_ISA_TABLES(kAttentionKernels)); }
const ActivationKernels& activation_kernels(Isa isa) { return pick(isa, LOWBIT_ISA_TABLES(kActivationKernels)); }
const LogitsKernels& logits_kernels(Isa isa) { return pick(isa, LOWBIT_ISA_TABLES(kLogitsKernels)); }

#undef LOWBIT_ISA_TABLES

const GridKernels& grid_kernels() { return grid_kernels(active_isa()); }

const LinalgKernels& linalg_kernels() { return linalg_kernels(active_isa()); }

const LinearKernels& linear_kernels() { return linear_kernels(active_isa()); }

const AttentionKernels& attention_kernels() { return attention_kernels(active_isa()); }

const ActivationKernels& activation_kernels() { return activation_kernels(active_isa()); }

const LogitsKernels& logits_kernels() { return logits_kernels(active_isa()); }

}  // namespace lowbit
