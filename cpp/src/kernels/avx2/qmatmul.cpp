// Quantized-matmul kernels compiled for the avx2 path (flags in cpp/CMakeLists.txt).
#define LOWBIT_QMATMUL_NS avx2
#include "../qmatmul_x86_impl.hpp"
