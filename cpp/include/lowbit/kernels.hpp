// Run-time dispatched kernels. Each kernel has a scalar reference (kernels/scalar/, the
// definition) and optional ISA variants (kernels/avx2/, kernels/avx512/) compiled with
// their own flags into the same library; one table per ISA, chosen once at run time.
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"
#include "lowbit/cpu_features.hpp"

namespace lowbit {

struct GridKernels {
  // lo/hi = min/max of x[0..n); returns false if any element is NaN or +-inf.
  bool (*range)(const float* x, i64 n, float* lo, float* hi);
  // codes[i] = clamp(round_half_even(x[i] / scale) + zero, 0, maxq)
  void (*quantize_codes)(const float* x, i64 n, float scale, float zero, int maxq,
                         std::uint8_t* codes);
  // y[i] = scale * (codes[i] - zero)
  void (*dequantize_codes)(const std::uint8_t* codes, i64 n, float scale, float zero, float* y);
};

// The table of the active ISA.
const GridKernels& grid_kernels();
// The table of a given ISA (tests compare every variant with the scalar one); throws
// Unsupported if this build or CPU lacks it.
const GridKernels& grid_kernels(Isa isa);

// ISA in use: best supported, unless LOWBIT_ISA or force_isa() chose another.
Isa active_isa();
// Switch the active ISA (tests, benchmarks); throws Unsupported if not available.
void force_isa(Isa isa);

namespace scalar { extern const GridKernels kGridKernels; }
namespace avx2 { extern const GridKernels kGridKernels; }
namespace avx512 { extern const GridKernels kGridKernels; }

}  // namespace lowbit
