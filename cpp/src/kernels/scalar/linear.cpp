// The inner kernels of linear compiled for the scalar path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_linear_scalar
#define LOWBIT_LINEAR_NS scalar
#include "../linear_impl.hpp"
