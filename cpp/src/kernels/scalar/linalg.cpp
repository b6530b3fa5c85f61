// Dense linear algebra compiled for the scalar path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_scalar
#define LOWBIT_LINALG_NS scalar
#include "../linalg_impl.hpp"
