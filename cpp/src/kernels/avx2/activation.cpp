// The elementwise activations compiled for the avx2 path (flags in cpp/CMakeLists.txt).
#define LOWBIT_ACTIVATION_NS avx2
#include "../activation_impl.hpp"
