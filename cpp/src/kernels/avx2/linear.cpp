// The inner kernels of linear compiled for the avx2 path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_linear_avx2
#define LOWBIT_LINEAR_NS avx2
#include "../linear_impl.hpp"
