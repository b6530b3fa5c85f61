// The scale searches behind ggml's k-quants and imatrix-aware legacy quants (internal).
// Each reproduces llama.cpp's float arithmetic in source order (REFERENCE.md §5.4); the
// results are byte-exact only when compiled with -ffp-contract=off.
#pragma once

#include <cstdint>

namespace lowbit::ggml {

// Symmetric: L[i] in [0, 2*nmax-1] (level l stored + nmax); returns the scale.
// rmse_type 0: plain absmax; 1..4: default weights x^2, 1, |x|, sqrt|x| (or qw if given) and a
// 19-candidate refinement; negative: one least-squares step, averaged with the absmax scale.
float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, int rmse_type, const float* qw);
// Symmetric with x^2 weights and coordinate descent; L[i] in [0, 2*nmax-1].
float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L, bool do_rmse);
// Asymmetric x ~ scale*l - the_min, l in [0, nmax]; weights required.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                       std::uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
// As qkx2 with x^2 default weights (weights may be null) and guards against a degenerate min.
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                       std::uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
// Non-negative values (sub-block scales) to [0, nmax] with weights quant_weights.
float make_qp_quants(int n, int nmax, const float* x, std::uint8_t* L, const float* quant_weights);

}  // namespace lowbit::ggml

namespace lowbit::ggml {

// The searches above on 8 blocks (block j at x + j*stride, weights at w + j*stride, codes at
// L + j*stride): on 8 AVX2 lanes where available, else 8 scalar calls. Same results either way.
void qkx_quants_x8(int n, int stride, int nmax, const float* x, const float* w, std::uint8_t* L, float* scale,
                   float* the_min, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3);
// make_qx_quants(n, nmax, ., ., rmse_type 1, w) on 8 blocks (w = x*x for ggml's default weights).
void qx_quants_x8(int n, int stride, int nmax, const float* x, const float* w, std::int8_t* L, float* scale);

// make_q3_quants(n, nmax, ., ., true) on 8 blocks.
void q3_quants_x8(int n, int stride, int nmax, const float* x, std::int8_t* L, float* scale);

}  // namespace lowbit::ggml
