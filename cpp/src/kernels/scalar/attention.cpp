// The inner kernel of attention compiled for the scalar path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_attention_scalar
#define LOWBIT_ATTENTION_NS scalar
#include "../attention_impl.hpp"
