// The machine's int8 dot-product instruction peak, measured: the denominator of the W8A8
// prefill figure in bench/bench_kernels.py ("W8A8 prefill >= 50% of the int8 peak").
//
// Each thread runs independent chains of the instruction sequence lowbit's int8 kernels use
// for one 4-element u8 x s8 dot per 32-bit lane, on registers only (no memory traffic):
//   AVX-512 VNNI: vpdpbusd (zmm)                         64 multiply-adds per instruction
//   AVX2:         vpmaddubsw + vpmaddwd + vpaddd (ymm)   32 multiply-adds per 3 instructions
//   NEON dotprod: sdot (q registers)                     16 multiply-adds per instruction
// Operations are counted as in GOP/s of a GEMM: 2 per multiply-add.
#pragma once

#include <cstdint>
#include <string>

#include "lowbit/common.hpp"
#include "lowbit/cpu_features.hpp"

namespace lowbit {

struct Int8Peak {
  double gops = 0;          // 2 * multiply-adds per second, all threads together
  std::string instruction;  // what was timed, e.g. "vpdpbusd zmm (AVX-512 VNNI)"
  int threads = 0;
};

// Runs for about `seconds` on every thread of lowbit's pool (parallel_for, fixed chunks).
Int8Peak measure_int8_peak(double seconds);

// One thread's loop: `iters` rounds over 8 accumulators; returns the multiply-adds done and
// writes a checksum to *sink (so the work cannot be optimised away). nullptr where the build
// or CPU lacks the instruction.
using Int8PeakLoop = std::int64_t (*)(std::int64_t iters, std::int32_t* sink);
namespace avx2 { std::int64_t int8_peak_loop(std::int64_t iters, std::int32_t* sink); }
namespace avx512 { std::int64_t int8_peak_loop_vnni(std::int64_t iters, std::int32_t* sink); }

}  // namespace lowbit
