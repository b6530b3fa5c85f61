// Quantized-matmul kernels for AVX-512 CPUs that also have AVX512-VNNI (vpdpbusd): chosen
// inside the avx512 path only when cpu_features().avx512vnni (see qmatmul_kernels()).
#define LOWBIT_QMATMUL_NS avx512_vnni
#include "../qmatmul_x86_impl.hpp"
