// ggml's quantizer inner loops, 8 blocks or 8 elements per AVX2 instruction (internal).
//
// The searches run one block per lane: each lane executes exactly the scalar algorithm of
// ggml_solvers.cpp (the same IEEE operations in the same order, branches turned into per-lane
// selects), so the results are bit-identical to the scalar reference; tests compare both on
// every format. Defined in ggml_lanes_avx2.cpp, built only on x86 (LOWBIT_HAVE_X86_KERNELS).
#pragma once

#include <cstdint>

namespace lowbit::ggml::lanes {

// True when the active ISA allows these kernels (lowbit.force_isa("scalar") turns them off).
bool enabled();

// ---- scale searches on 8 blocks: block j at x + j*stride, its weights at w + j*stride, its
// codes at L + j*stride (n <= 32)
// make_qkx2_quants (qkx3 = false) / make_qkx3_quants (qkx3 = true, weights given).
void qkx_quants8(int n, int stride, int nmax, const float* x, const float* w, std::uint8_t* L, float* scale,
                 float* the_min, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3);
// make_qx_quants(n, nmax, ., ., rmse_type = 1, w) (pass w = x*x for ggml's default weights).
void qx_quants8(int n, int stride, int nmax, const float* x, const float* w, std::int8_t* L, float* scale);
// make_q3_quants(n, nmax, ., ., do_rmse = true) (Q3_K without an imatrix).
void q3_quants8(int n, int stride, int nmax, const float* x, std::int8_t* L, float* scale);
// IQ4_NL as ggml_quantize_chunk does it on 8 consecutive 32-blocks: the search with ntry = 7
// (qw = imatrix columns of these blocks, or null) and the final indices.
void iq4_nl_blocks8(const float* x, const float* qw, float* scale, std::uint8_t* L);

// ---- the legacy *_ref rounding of one 32-block. Return false (nothing written) for a block
// the scalar reference must do: NaN inside, or a zero max/min whose sign the scan order decides.
// Q4_0 (nmax 8) / Q5_0 (nmax 16): d = max/-nmax, codes min(2*nmax-1, (int8)(x/d + nmax+0.5)).
bool sym_codes32(const float* x, int nmax, float* d, std::uint8_t* codes);
// Q4_1 (levels 15, clamp) / Q5_1 (levels 31, no clamp): d = (max-min)/levels, m = min.
bool asym_codes32(const float* x, int levels, bool clamp15, float* d, float* m, std::uint8_t* codes);
// Q8_0/Q8_1: d = amax/127, codes roundf(x/d).
bool q8_codes32(const float* x, float* d, std::int8_t* codes);

// ---- requantization and packing
// The k-quants' final codes (n multiple of 8): L[i] = clamp(nearest_int((x[i] + dm)/d), lo, hi) + off.
void requantize(int n, const float* x, float dm, float d, int lo, int hi, int off, std::uint8_t* L);
// 32 codes: qs[j] = c[j] | (uint8)(c[j+16] << 4) (Q4_0/Q4_1), and the 5-bit split (Q5_0/Q5_1):
// qs[j] = (c[j] & 15) | (c[j+16] & 15) << 4, bit 4 of c[j] -> bit j of qh.
void pack_nibbles32(const std::uint8_t* codes, std::uint8_t* qs);
void pack_5bit32(const std::uint8_t* codes, std::uint8_t* qs, std::uint8_t* qh);
// Q3_K's bit planes from codes L[256] in [0, 7]: bit 2 of L[32k+m] -> bit k of hmask[m], the
// low 2 bits packed as in Q2_K (byte 32h+l holds L[128h+l+32k] at bit 2k).
void pack_q3_K(const std::int8_t* L, std::uint8_t* hmask, std::uint8_t* qs);
// Q2_K's packing of codes L[256] in [0, 3].
void pack_q2_K(const std::uint8_t* L, std::uint8_t* qs);

}  // namespace lowbit::ggml::lanes
