// linear: y = x W^T + bias, split into fixed blocks of (rows of x) x (rows of W), each one
// single-threaded GEMM of the active ISA's kernels (kernels/<isa>/linear.cpp).
#include <algorithm>
#include <vector>

#include "lowbit/kernels.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// Block sizes depend on the problem only (never on the thread count), so every output is
// computed by the same sequence of operations however many threads share the blocks.
// Rows of W per block: a GEMV (decode) is bound by reading W, so small blocks just balance
// the threads; a GEMM packs its x block once per call, so wider blocks amortise that (measured
// on AVX2 at K = 576: 128 -> 256 rows gains ~5%), but narrow layers keep a few blocks.
i64 block_rows_w(i64 M, i64 N) {
  if (M == 1) return 64;
  return N >= 4096 ? 256 : 128;
}
// Rows of x per block: prefill batches are cut so that their blocks also spread over threads.
constexpr i64 kBlockRowsX = 256;

// W can be handed to the GEMM as is: float32 rows, contiguous, not overlapping.
bool usable_in_place(const AnyMatrixView& W) {
  return W.dtype == DType::F32 && W.col_stride == 1 && (W.rows == 1 || W.row_stride >= W.cols);
}

// Rows [n0, n0 + nb) of W as float32 into dst [nb, K].
void load_rows(const AnyMatrixView& W, i64 n0, i64 nb, const LinearKernels& k, float* dst) {
  const i64 K = W.cols;
  for (i64 r = 0; r < nb; ++r) {
    float* d = dst + r * K;
    if (W.dtype != DType::F32 && W.col_stride == 1) {
      const auto* src = static_cast<const std::uint16_t*>(W.data) + (n0 + r) * W.row_stride;
      (W.dtype == DType::F16 ? k.widen_f16 : k.widen_bf16)(src, K, d);
    } else {
      W.load_row(n0 + r, d);
    }
  }
}

}  // namespace

void linear(const float* x, i64 M, i64 K, const AnyMatrixView& W, const float* bias, float* y) {
  LOWBIT_CHECK(M >= 0 && K >= 1, "linear: x must be [M, K] with K >= 1, got M=", M, " K=", K);
  LOWBIT_CHECK(W.rows >= 1 && W.cols == K, "linear: W must be [N, K=", K, "] with N >= 1, got ", W.describe());
  if (M == 0) return;
  const i64 N = W.rows;
  const LinearKernels& k = linear_kernels();
  const bool in_place = usable_in_place(W);
  const i64 bn = block_rows_w(M, N), bm = std::min(M, kBlockRowsX);
  const i64 n_bn = (N + bn - 1) / bn, n_bm = (M + bm - 1) / bm;
  parallel_for(n_bn * n_bm, [&](i64 t) {
    // consecutive items share a block of W (it stays in cache on one thread)
    const i64 n0 = (t / n_bm) * bn, nb = std::min(bn, N - n0);
    const i64 m0 = (t % n_bm) * bm, mb = std::min(bm, M - m0);
    const float* w;
    i64 ldw;
    if (in_place) {
      w = static_cast<const float*>(W.data) + n0 * W.row_stride;
      ldw = W.row_stride;
    } else {
      // thread_local: a fresh buffer per block would be an mmap + page faults each time
      thread_local std::vector<float> buf;
      buf.resize(static_cast<std::size_t>(nb * K));
      load_rows(W, n0, nb, k, buf.data());
      w = buf.data();
      ldw = K;
    }
    float* yb = y + m0 * N + n0;
    k.gemm_nt(x + m0 * K, mb, K, K, w, nb, ldw, yb, N);
    if (bias != nullptr)
      for (i64 m = 0; m < mb; ++m)
        for (i64 j = 0; j < nb; ++j) yb[m * N + j] += bias[n0 + j];
  });
}

}  // namespace lowbit
