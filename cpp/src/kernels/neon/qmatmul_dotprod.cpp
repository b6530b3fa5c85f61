// Quantized-matmul kernels for aarch64 with the dot-product extension (SDOT; flags in
// cpp/CMakeLists.txt). Chosen at run time when HWCAP_ASIMDDP is set (cpu_features.cpp).
#define LOWBIT_QMATMUL_NS neon_dotprod
#include "../qmatmul_neon_impl.hpp"
