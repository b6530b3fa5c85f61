// Dense linear algebra compiled for the avx512 path (flags in cpp/CMakeLists.txt).
#define Eigen lowbit_eigen_avx512
#define LOWBIT_LINALG_NS avx512
#include "../linalg_impl.hpp"
