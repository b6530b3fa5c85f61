// The logits row sums compiled for the avx512 path (flags in cpp/CMakeLists.txt).
#define LOWBIT_LOGITS_NS avx512
#include "../logits_impl.hpp"
