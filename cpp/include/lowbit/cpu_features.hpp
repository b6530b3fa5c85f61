// CPU feature detection (CPUID *and* OS support via XGETBV) and the ISA path in use.
#pragma once

#include <string>

namespace lowbit {

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avxvnni = false;
  bool os_avx = false, os_avx512 = false;  // the OS saves the YMM / ZMM+mask state
  bool neon = false, dotprod = false;
};

// The kernel families lowbit compiles. Among the x86 ones higher is better and each implies
// the ones below; Neon (aarch64) only stands above Scalar. On Neon only the quantized matmul
// (qmatmul.hpp) has SIMD kernels; the other families run their scalar tables there.
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

const char* isa_name(Isa isa);
// "scalar" | "avx2" | "avx512" | "neon"; throws InvalidArgument for anything else.
Isa parse_isa(const std::string& name);

// Detected once, cached.
const CpuFeatures& cpu_features();
// Whether this build contains kernels for `isa` and this CPU+OS can run them.
bool isa_supported(Isa isa);
// Best supported ISA, or the LOWBIT_ISA environment override (checked: an unsupported
// request throws Unsupported the first time kernels are needed).
Isa best_isa();

}  // namespace lowbit
