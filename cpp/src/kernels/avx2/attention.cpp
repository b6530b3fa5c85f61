// The inner kernel of attention compiled for the avx2 path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_attention_avx2
#define LOWBIT_ATTENTION_NS avx2
#include "../attention_impl.hpp"
