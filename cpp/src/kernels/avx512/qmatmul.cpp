// Quantized-matmul kernels compiled for the avx512 path (flags in cpp/CMakeLists.txt): the
// 256-bit kernels with 32 vector registers, and vpdpbusd where the flags include VNNI.
#define LOWBIT_QMATMUL_NS avx512
#include "../qmatmul_x86_impl.hpp"
