// Quantized-matmul kernels for baseline aarch64 (Armv8-A Advanced SIMD; flags in cpp/CMakeLists.txt).
#define LOWBIT_QMATMUL_NS neon
#include "../qmatmul_neon_impl.hpp"
