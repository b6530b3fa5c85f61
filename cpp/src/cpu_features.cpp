// CPUID + XGETBV feature detection. Checking the OS-enabled state (XCR0) matters: a CPU
// may support AVX-512 while the OS (or a VM) does not save ZMM registers.
#include "lowbit/cpu_features.hpp"

#include <string>

#include "lowbit/common.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define LOWBIT_X86_DETECT 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)  // the kernel's bit for SDOT/UDOT (asm/hwcap.h)
#endif
#endif

namespace lowbit {

namespace {

#ifdef LOWBIT_X86_DETECT
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef LOWBIT_X86_DETECT
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  __get_cpuid(1, &a, &b, &c, &d);
  f.sse42 = (c >> 20) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  const bool osxsave = (c >> 27) & 1;
  f.avx = (c >> 28) & 1;
  if (osxsave) {
    const unsigned long long xcr0 = xgetbv0();
    f.os_avx = (xcr0 & 0x6) == 0x6;        // XMM + YMM state
    f.os_avx512 = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
    __cpuid_count(7, 1, a, b, c, d);
    f.avxvnni = (a >> 4) & 1;
    f.avx512bf16 = (a >> 5) & 1;
  }
  if (!f.os_avx) f.avx = f.avx2 = f.fma = f.f16c = f.avxvnni = false;
  if (!f.os_avx512) f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512vnni = f.avx512bf16 = false;
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is part of the AArch64 baseline
#if defined(__linux__)
  f.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__ARM_FEATURE_DOTPROD)
  f.dotprod = true;  // no run-time query here: trust the build's target
#endif
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  if (name == "neon") return Isa::Neon;
  throw InvalidArgument(str_cat("ISA must be one of 'scalar', 'avx2', 'avx512', 'neon', got '", name, "'"));
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar: return true;
#ifdef LOWBIT_HAVE_X86_KERNELS
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c;
    case Isa::Avx512: return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
#else
    case Isa::Avx2:
    case Isa::Avx512: (void)f; return false;
#endif
#ifdef LOWBIT_HAVE_NEON_KERNELS
    case Isa::Neon: return f.neon;
#else
    case Isa::Neon: return false;
#endif
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::Neon)) return Isa::Neon;
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

}  // namespace lowbit
