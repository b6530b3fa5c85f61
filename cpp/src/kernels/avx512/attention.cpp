// The inner kernel of attention compiled for the avx512 path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_attention_avx512
#define LOWBIT_ATTENTION_NS avx512
#include "../attention_impl.hpp"
