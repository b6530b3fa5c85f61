// The elementwise activations compiled for the scalar path (flags in cpp/CMakeLists.txt).
#define LOWBIT_ACTIVATION_NS scalar
#include "../activation_impl.hpp"
