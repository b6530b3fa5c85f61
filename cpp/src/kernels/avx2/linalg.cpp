// Dense linear algebra compiled for the avx2 path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_avx2
#define LOWBIT_LINALG_NS avx2
#include "../linalg_impl.hpp"
