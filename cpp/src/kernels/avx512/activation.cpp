// The elementwise activations compiled for the avx512 path (flags in cpp/CMakeLists.txt).
#define LOWBIT_ACTIVATION_NS avx512
#include "../activation_impl.hpp"
