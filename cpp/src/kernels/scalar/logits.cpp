// The logits row sums compiled for the scalar path (flags in cpp/CMakeLists.txt).
#define LOWBIT_LOGITS_NS scalar
#include "../logits_impl.hpp"
