// Throughput of the qmatmul register tiles by static analysis (llvm-mca), immune to the noise
// of a shared machine. Built by bench/mca/qmatmul_tiles.sh, never linked into lowbit.
#define LOWBIT_MCA_BEGIN(name) __asm volatile("# LLVM-MCA-BEGIN " name);
#define LOWBIT_MCA_END(name) __asm volatile("# LLVM-MCA-END " name);
#define LOWBIT_QMATMUL_NS mca
#include "../../cpp/src/kernels/qmatmul_x86_impl.hpp"

namespace lowbit::mca {
void tile(const PackedWeights& w, const std::uint8_t* const* wr, const ActQ8& a, float* y) {
  tile_q8<QContainer::MCA_CONTAINER, MCA_UNPACKED, LOWBIT_Q8_NR, LOWBIT_Q8_MR>(w, wr, 32, 0, a, 0, y, 8);
}
}  // namespace lowbit::mca
