// The logits row sums compiled for the avx2 path (flags in cpp/CMakeLists.txt).
#define LOWBIT_LOGITS_NS avx2
#include "../logits_impl.hpp"
