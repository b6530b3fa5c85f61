// The inner kernels of linear compiled for the avx512 path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_linear_avx512
#define LOWBIT_LINEAR_NS avx512
#include "../linear_impl.hpp"
