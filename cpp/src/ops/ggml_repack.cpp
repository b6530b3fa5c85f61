// Interleaved kernel layouts of GGUF weights (lowbit/ggml_repack.hpp): the one-time repack
// and its inverse (for the paths that read native rows: scalar kernels, act="float32").
#include "lowbit/ggml_repack.hpp"

#include <cstring>

#include "lowbit/ggml_blocks.hpp"

namespace lowbit {

namespace {

// Blocks of one fp16 scale and kChunks x 4 code bytes (q4_0 / iq4_nl: 4, q8_0: 8), 8 rows
// interleaved per block: [8 scales][chunk 0: 4 bytes of each row] ... [chunk kChunks-1].
template <int kChunks>
constexpr i64 kD16x8BlockBytes = 16 + 32 * kChunks;

template <class Block, int kChunks>
void repack_d16x8(const std::uint8_t* native, i64 rows, i64 cols, i64 block_elems, std::uint8_t* dst) {
  constexpr i64 BB = kD16x8BlockBytes<kChunks>;
  const i64 nb = cols / block_elems, groups = (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  std::memset(dst, 0, static_cast<std::size_t>(groups * nb * BB));  // padding rows: d = 0, codes 0
  for (i64 g = 0; g < groups; ++g)
    for (int r = 0; r < kQ4_0x8Rows && g * kQ4_0x8Rows + r < rows; ++r) {
      const auto* src = reinterpret_cast<const Block*>(native) + (g * kQ4_0x8Rows + r) * nb;
      for (i64 i = 0; i < nb; ++i) {
        std::uint8_t* blk = dst + (g * nb + i) * BB;
        std::memcpy(blk + 2 * r, &src[i].d, 2);
        for (int c = 0; c < kChunks; ++c) std::memcpy(blk + 16 + 32 * c + 4 * r, src[i].qs + 4 * c, 4);
      }
    }
}

template <class Block, int kChunks>
void unpack_d16x8_row(const std::uint8_t* packed, i64 r, i64 cols, i64 block_elems, std::uint8_t* native_row) {
  constexpr i64 BB = kD16x8BlockBytes<kChunks>;
  const i64 nb = cols / block_elems, g = r / kQ4_0x8Rows, rr = r % kQ4_0x8Rows;
  auto* out = reinterpret_cast<Block*>(native_row);
  for (i64 i = 0; i < nb; ++i) {
    const std::uint8_t* blk = packed + (g * nb + i) * BB;
    std::memcpy(&out[i].d, blk + 2 * rr, 2);
    for (int c = 0; c < kChunks; ++c) std::memcpy(out[i].qs + 4 * c, blk + 16 + 32 * c + 4 * rr, 4);
  }
}

static_assert(kD16x8BlockBytes<4> == kQ4_0x8BlockBytes);
static_assert(kD16x8BlockBytes<8> == kQ8_0x8BlockBytes);

}  // namespace

i64 q4_0x8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK4_0) * kQ4_0x8BlockBytes;
}
void repack_q4_0x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_d16x8<ggml::block_q4_0, 4>(native, rows, cols, ggml::QK4_0, dst);
}
void unpack_q4_0x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_d16x8_row<ggml::block_q4_0, 4>(packed, r, cols, ggml::QK4_0, native_row);
}

// ---- q8_0
i64 q8_0x8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK8_0) * kQ8_0x8BlockBytes;
}
void repack_q8_0x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_d16x8<ggml::block_q8_0, 8>(native, rows, cols, ggml::QK8_0, dst);
}
void unpack_q8_0x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_d16x8_row<ggml::block_q8_0, 8>(packed, r, cols, ggml::QK8_0, native_row);
}

// ---- q4_1, q5_0, q5_1
namespace {

// [8 d] [8 m if Min] [32-byte high plane if High] [4 chunks x 32 bytes] per block of 8 rows.
template <bool Min, bool High>
constexpr i64 kLegacyx8Bytes = 16 + (Min ? 16 : 0) + (High ? 32 : 0) + 128;

template <class Block, bool Min, bool High>
void repack_legacy_x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  constexpr i64 BB = kLegacyx8Bytes<Min, High>, qoff = BB - 128, hoff = 16 + (Min ? 16 : 0);
  const i64 nb = cols / 32, groups = (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  std::memset(dst, 0, static_cast<std::size_t>(groups * nb * BB));  // padding rows: d = m = 0, codes 0
  for (i64 g = 0; g < groups; ++g)
    for (int r = 0; r < kQ4_0x8Rows && g * kQ4_0x8Rows + r < rows; ++r) {
      const auto* src = reinterpret_cast<const Block*>(native) + (g * kQ4_0x8Rows + r) * nb;
      for (i64 i = 0; i < nb; ++i) {
        std::uint8_t* blk = dst + (g * nb + i) * BB;
        std::memcpy(blk + 2 * r, &src[i].d, 2);
        if constexpr (Min) std::memcpy(blk + 16 + 2 * r, &src[i].m, 2);
        for (int c = 0; c < 4; ++c) std::memcpy(blk + qoff + 32 * c + 4 * r, src[i].qs + 4 * c, 4);
        if constexpr (High) {
          std::uint32_t qh;
          std::memcpy(&qh, src[i].qh, 4);
          for (int e = 0; e < 32; ++e) {  // element e = 16h + 4c + t -> byte 4r+t, bit 2c+h
            const int h = e / 16, c = (e % 16) / 4, t = e % 4;
            blk[hoff + 4 * r + t] = static_cast<std::uint8_t>(blk[hoff + 4 * r + t] | (((qh >> e) & 1u) << (2 * c + h)));
          }
        }
      }
    }
}

template <class Block, bool Min, bool High>
void unpack_legacy_x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  constexpr i64 BB = kLegacyx8Bytes<Min, High>, qoff = BB - 128, hoff = 16 + (Min ? 16 : 0);
  const i64 nb = cols / 32, g = r / kQ4_0x8Rows, rr = r % kQ4_0x8Rows;
  auto* out = reinterpret_cast<Block*>(native_row);
  for (i64 i = 0; i < nb; ++i) {
    const std::uint8_t* blk = packed + (g * nb + i) * BB;
    std::memcpy(&out[i].d, blk + 2 * rr, 2);
    if constexpr (Min) std::memcpy(&out[i].m, blk + 16 + 2 * rr, 2);
    for (int c = 0; c < 4; ++c) std::memcpy(out[i].qs + 4 * c, blk + qoff + 32 * c + 4 * rr, 4);
    if constexpr (High) {
      std::uint32_t qh = 0;
      for (int e = 0; e < 32; ++e) {
        const int h = e / 16, c = (e % 16) / 4, t = e % 4;
        qh |= static_cast<std::uint32_t>((blk[hoff + 4 * rr + t] >> (2 * c + h)) & 1) << e;
      }
      std::memcpy(out[i].qh, &qh, 4);
    }
  }
}

static_assert(kLegacyx8Bytes<true, false> == kQ4_1x8BlockBytes);
static_assert(kLegacyx8Bytes<false, true> == kQ5_0x8BlockBytes);
static_assert(kLegacyx8Bytes<true, true> == kQ5_1x8BlockBytes);

}  // namespace

i64 q4_1x8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK4_1) * kQ4_1x8BlockBytes;
}
void repack_q4_1x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_legacy_x8<ggml::block_q4_1, true, false>(native, rows, cols, dst);
}
void unpack_q4_1x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_legacy_x8_row<ggml::block_q4_1, true, false>(packed, r, cols, native_row);
}
i64 q5_0x8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK5_0) * kQ5_0x8BlockBytes;
}
void repack_q5_0x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_legacy_x8<ggml::block_q5_0, false, true>(native, rows, cols, dst);
}
void unpack_q5_0x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_legacy_x8_row<ggml::block_q5_0, false, true>(packed, r, cols, native_row);
}
i64 q5_1x8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK5_1) * kQ5_1x8BlockBytes;
}
void repack_q5_1x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_legacy_x8<ggml::block_q5_1, true, true>(native, rows, cols, dst);
}
void unpack_q5_1x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_legacy_x8_row<ggml::block_q5_1, true, true>(packed, r, cols, native_row);
}

// ---- q6_K
namespace {

// Native q6_K block <-> its 256 unsigned 6-bit codes in element order (ggml's dequantize order).
void q6_K_codes(const ggml::block_q6_K& b, std::uint8_t u[ggml::QK_K]) {
  for (int hf = 0; hf < 2; ++hf)
    for (int l = 0; l < 32; ++l) {
      const std::uint8_t* ql = b.ql + 64 * hf;
      const std::uint8_t qh = b.qh[32 * hf + l];
      std::uint8_t* o = u + 128 * hf;
      o[l] = static_cast<std::uint8_t>((ql[l] & 0xf) | ((qh & 3) << 4));
      o[l + 32] = static_cast<std::uint8_t>((ql[l + 32] & 0xf) | (((qh >> 2) & 3) << 4));
      o[l + 64] = static_cast<std::uint8_t>((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
      o[l + 96] = static_cast<std::uint8_t>((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
    }
}

void q6_K_from_codes(const std::uint8_t u[ggml::QK_K], ggml::block_q6_K& b) {
  for (int hf = 0; hf < 2; ++hf)
    for (int l = 0; l < 32; ++l) {
      const std::uint8_t* o = u + 128 * hf;
      b.ql[64 * hf + l] = static_cast<std::uint8_t>((o[l] & 0xf) | ((o[l + 64] & 0xf) << 4));
      b.ql[64 * hf + l + 32] = static_cast<std::uint8_t>((o[l + 32] & 0xf) | ((o[l + 96] & 0xf) << 4));
      b.qh[32 * hf + l] = static_cast<std::uint8_t>((o[l] >> 4) | ((o[l + 32] >> 4) << 2) | ((o[l + 64] >> 4) << 4) |
                                                    ((o[l + 96] >> 4) << 6));
    }
}

// Where element e (0..255) of row r lives in a q6_Kx8 super-block: nibble byte/shift, top-bits byte/shift.
struct Q6Pos {
  int nib_byte, nib_shift, hi_byte, hi_shift;
};
Q6Pos q6_pos(int e, int r) {
  const int q = e / 32, w = e % 32, nib = w / 16, c = (w % 16) / 4, t = w % 4;
  const int base = 144 + 192 * q;
  return {base + 32 * c + 4 * r + t, 4 * nib, base + 128 + 32 * (c / 2) + 4 * r + t, 2 * (2 * (c % 2) + nib)};
}

}  // namespace

i64 q6_Kx8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK_K) * kQ6_Kx8BlockBytes;
}

void repack_q6_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  using ggml::block_q6_K;
  const i64 nb = cols / ggml::QK_K, groups = (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  std::memset(dst, 0, static_cast<std::size_t>(q6_Kx8_nbytes(rows, cols)));
  std::uint8_t u[ggml::QK_K];
  for (i64 g = 0; g < groups; ++g)
    for (int r = 0; r < kQ4_0x8Rows && g * kQ4_0x8Rows + r < rows; ++r) {
      const auto* src = reinterpret_cast<const block_q6_K*>(native) + (g * kQ4_0x8Rows + r) * nb;
      for (i64 i = 0; i < nb; ++i) {
        std::uint8_t* blk = dst + (g * nb + i) * kQ6_Kx8BlockBytes;
        std::memcpy(blk + 2 * r, &src[i].d, 2);
        for (int j = 0; j < 16; ++j) std::memcpy(blk + 16 + 16 * (j / 2) + 2 * r + (j & 1), &src[i].scales[j], 1);
        q6_K_codes(src[i], u);
        for (int e = 0; e < ggml::QK_K; ++e) {
          const Q6Pos p = q6_pos(e, r);
          blk[p.nib_byte] = static_cast<std::uint8_t>(blk[p.nib_byte] | ((u[e] & 0xf) << p.nib_shift));
          blk[p.hi_byte] = static_cast<std::uint8_t>(blk[p.hi_byte] | ((u[e] >> 4) << p.hi_shift));
        }
      }
    }
}

void unpack_q6_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  using ggml::block_q6_K;
  const i64 nb = cols / ggml::QK_K, g = r / kQ4_0x8Rows;
  const int rr = static_cast<int>(r % kQ4_0x8Rows);
  auto* out = reinterpret_cast<block_q6_K*>(native_row);
  std::uint8_t u[ggml::QK_K];
  for (i64 i = 0; i < nb; ++i) {
    const std::uint8_t* blk = packed + (g * nb + i) * kQ6_Kx8BlockBytes;
    std::memcpy(&out[i].d, blk + 2 * rr, 2);
    for (int j = 0; j < 16; ++j) std::memcpy(&out[i].scales[j], blk + 16 + 16 * (j / 2) + 2 * rr + (j & 1), 1);
    for (int e = 0; e < ggml::QK_K; ++e) {
      const Q6Pos p = q6_pos(e, rr);
      u[e] = static_cast<std::uint8_t>(((blk[p.nib_byte] >> p.nib_shift) & 0xf) | (((blk[p.hi_byte] >> p.hi_shift) & 3) << 4));
    }
    q6_K_from_codes(u, out[i]);
  }
}

// ---- q3_K
namespace {

// q3_K's 16 six-bit scales (stored value; the scale is value - 32) <-> its 12 packed bytes.
int q3_K_scale(const std::uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
  return lo | (((s[8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4);
}
void set_q3_K_scale(std::uint8_t* s, int j, int v) {
  if (j < 8) s[j] = static_cast<std::uint8_t>((s[j] & 0xf0) | (v & 0xf));
  else s[j - 8] = static_cast<std::uint8_t>((s[j - 8] & 0x0f) | ((v & 0xf) << 4));
  s[8 + (j & 3)] = static_cast<std::uint8_t>(s[8 + (j & 3)] | (((v >> 4) & 3) << (2 * (j >> 2))));
}

// Element e of a native q3_K block: its low 2 bits at qs[32 jh + l] >> 2s, 3rd bit at hmask[l]
// bit 4 jh + s, for e = 128 jh + 32 s + l.
struct Q3Src {
  int q, shift, h, hbit;
};
Q3Src q3_src(int e) {
  const int jh = e / 128, s = (e % 128) / 32, l = e % 32;
  return {32 * jh + l, 2 * s, l, 4 * jh + s};
}
// ... and in a q3_Kx8 super-block (row r): low-bits byte/shift, 3rd-bit byte/bit.
struct Q3Pos {
  int lo_byte, lo_shift, hi_byte, hi_bit;
};
Q3Pos q3_pos(int e, int r) {
  const int q = e / 32, w = e % 32, n = w / 16, c = (w % 16) / 4, t = w % 4;
  const int base = 144 + 96 * q;
  return {base + 32 * n + 4 * r + t, 2 * c, base + 64 + 4 * r + t, 4 * n + c};
}

}  // namespace

i64 q3_Kx8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK_K) * kQ3_Kx8BlockBytes;
}

void repack_q3_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  using ggml::block_q3_K;
  const i64 nb = cols / ggml::QK_K, groups = (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  std::memset(dst, 0, static_cast<std::size_t>(q3_Kx8_nbytes(rows, cols)));  // padding rows: d = 0
  for (i64 g = 0; g < groups; ++g)
    for (int r = 0; r < kQ4_0x8Rows && g * kQ4_0x8Rows + r < rows; ++r) {
      const auto* src = reinterpret_cast<const block_q3_K*>(native) + (g * kQ4_0x8Rows + r) * nb;
      for (i64 i = 0; i < nb; ++i) {
        std::uint8_t* blk = dst + (g * nb + i) * kQ3_Kx8BlockBytes;
        std::memcpy(blk + 2 * r, &src[i].d, 2);
        for (int j = 0; j < 16; ++j)
          blk[16 + 16 * (j / 2) + 2 * r + (j & 1)] = static_cast<std::uint8_t>(q3_K_scale(src[i].scales, j) - 32);
        for (int e = 0; e < ggml::QK_K; ++e) {
          const Q3Src a = q3_src(e);
          const Q3Pos p = q3_pos(e, r);
          blk[p.lo_byte] = static_cast<std::uint8_t>(blk[p.lo_byte] | (((src[i].qs[a.q] >> a.shift) & 3) << p.lo_shift));
          blk[p.hi_byte] = static_cast<std::uint8_t>(blk[p.hi_byte] | (((src[i].hmask[a.h] >> a.hbit) & 1) << p.hi_bit));
        }
      }
    }
}

void unpack_q3_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  using ggml::block_q3_K;
  const i64 nb = cols / ggml::QK_K, g = r / kQ4_0x8Rows;
  const int rr = static_cast<int>(r % kQ4_0x8Rows);
  auto* out = reinterpret_cast<block_q3_K*>(native_row);
  for (i64 i = 0; i < nb; ++i) {
    const std::uint8_t* blk = packed + (g * nb + i) * kQ3_Kx8BlockBytes;
    block_q3_K& b = out[i];
    std::memset(&b, 0, sizeof b);
    std::memcpy(&b.d, blk + 2 * rr, 2);
    for (int j = 0; j < 16; ++j)
      set_q3_K_scale(b.scales, j, static_cast<std::uint8_t>(blk[16 + 16 * (j / 2) + 2 * rr + (j & 1)] + 32));
    for (int e = 0; e < ggml::QK_K; ++e) {
      const Q3Src a = q3_src(e);
      const Q3Pos p = q3_pos(e, rr);
      b.qs[a.q] = static_cast<std::uint8_t>(b.qs[a.q] | (((blk[p.lo_byte] >> p.lo_shift) & 3) << a.shift));
      b.hmask[a.h] = static_cast<std::uint8_t>(b.hmask[a.h] | (((blk[p.hi_byte] >> p.hi_bit) & 1) << a.hbit));
    }
  }
}

// ---- q2_K
namespace {

// Element e of a native q2_K block: qs[32 (e / 128) + e % 32] >> 2 ((e % 128) / 32); in a
// q2_Kx8 super-block (row r): byte 160 + 64q + 32n + 4r + t, bits 2c, for e = 32q + 16n + 4c + t.
void q2_src(int e, int* byte, int* shift) {
  *byte = 32 * (e / 128) + e % 32;
  *shift = 2 * ((e % 128) / 32);
}
void q2_pos(int e, int r, int* byte, int* shift) {
  const int q = e / 32, w = e % 32, n = w / 16, c = (w % 16) / 4, t = w % 4;
  *byte = 160 + 64 * q + 32 * n + 4 * r + t;
  *shift = 2 * c;
}

}  // namespace

i64 q2_Kx8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK_K) * kQ2_Kx8BlockBytes;
}

void repack_q2_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  using ggml::block_q2_K;
  const i64 nb = cols / ggml::QK_K, groups = (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  std::memset(dst, 0, static_cast<std::size_t>(q2_Kx8_nbytes(rows, cols)));  // padding rows: d = dmin = 0
  for (i64 g = 0; g < groups; ++g)
    for (int r = 0; r < kQ4_0x8Rows && g * kQ4_0x8Rows + r < rows; ++r) {
      const auto* src = reinterpret_cast<const block_q2_K*>(native) + (g * kQ4_0x8Rows + r) * nb;
      for (i64 i = 0; i < nb; ++i) {
        std::uint8_t* blk = dst + (g * nb + i) * kQ2_Kx8BlockBytes;
        std::memcpy(blk + 2 * r, &src[i].d, 2);
        std::memcpy(blk + 16 + 2 * r, &src[i].dmin, 2);
        for (int j = 0; j < 16; ++j) blk[32 + 16 * (j / 2) + 2 * r + (j & 1)] = src[i].scales[j];
        for (int e = 0; e < ggml::QK_K; ++e) {
          int sb, ss, db, ds;
          q2_src(e, &sb, &ss);
          q2_pos(e, r, &db, &ds);
          blk[db] = static_cast<std::uint8_t>(blk[db] | (((src[i].qs[sb] >> ss) & 3) << ds));
        }
      }
    }
}

void unpack_q2_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  using ggml::block_q2_K;
  const i64 nb = cols / ggml::QK_K, g = r / kQ4_0x8Rows;
  const int rr = static_cast<int>(r % kQ4_0x8Rows);
  auto* out = reinterpret_cast<block_q2_K*>(native_row);
  for (i64 i = 0; i < nb; ++i) {
    const std::uint8_t* blk = packed + (g * nb + i) * kQ2_Kx8BlockBytes;
    block_q2_K& b = out[i];
    std::memset(&b, 0, sizeof b);
    std::memcpy(&b.d, blk + 2 * rr, 2);
    std::memcpy(&b.dmin, blk + 16 + 2 * rr, 2);
    for (int j = 0; j < 16; ++j) b.scales[j] = blk[32 + 16 * (j / 2) + 2 * rr + (j & 1)];
    for (int e = 0; e < ggml::QK_K; ++e) {
      int sb, ss, db, ds;
      q2_src(e, &sb, &ss);
      q2_pos(e, rr, &db, &ds);
      b.qs[sb] = static_cast<std::uint8_t>(b.qs[sb] | (((blk[db] >> ds) & 3) << ss));
    }
  }
}

// ---- q4_K
namespace {

// ggml's 12-byte packing of 8 6-bit scales and mins (get_scale_min_k4 reads it back).
void get_scale_min(int j, const std::uint8_t* q, std::uint8_t* d, std::uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<std::uint8_t>((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void set_scale_min(int j, std::uint8_t d, std::uint8_t m, std::uint8_t* q) {
  if (j < 4) {
    q[j] = static_cast<std::uint8_t>((q[j] & 0xc0) | d);
    q[j + 4] = static_cast<std::uint8_t>((q[j + 4] & 0xc0) | m);
  } else {
    q[j + 4] = static_cast<std::uint8_t>((d & 0xf) | ((m & 0xf) << 4));
    q[j - 4] = static_cast<std::uint8_t>((q[j - 4] & 0x3f) | ((d >> 4) << 6));
    q[j] = static_cast<std::uint8_t>((q[j] & 0x3f) | ((m >> 4) << 6));
  }
}

}  // namespace

namespace {

// q4_Kx8 (Five: q5_Kx8, the same bytes then the high plane: byte 1184 + 32c + 4r + t = row r's
// qh[4c+t], whose bit j is bit 4 of element 32j + 4c + t).
template <class Block, bool Five>
void repack_q45_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  constexpr i64 BB = Five ? kQ5_Kx8BlockBytes : kQ4_Kx8BlockBytes;
  const i64 nb = cols / ggml::QK_K, groups = (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  std::memset(dst, 0, static_cast<std::size_t>(groups * nb * BB));
  for (i64 g = 0; g < groups; ++g)
    for (int r = 0; r < kQ4_0x8Rows && g * kQ4_0x8Rows + r < rows; ++r) {
      const auto* src = reinterpret_cast<const Block*>(native) + (g * kQ4_0x8Rows + r) * nb;
      for (i64 i = 0; i < nb; ++i) {
        std::uint8_t* blk = dst + (g * nb + i) * BB;
        std::memcpy(blk + 2 * r, &src[i].d, 2);
        std::memcpy(blk + 16 + 2 * r, &src[i].dmin, 2);
        for (int j = 0; j < 8; ++j)
          get_scale_min(j, src[i].scales, blk + 32 + 8 * j + r, blk + 96 + 16 * (j / 2) + 2 * r + (j & 1));
        for (int h = 0; h < 4; ++h)
          for (int c = 0; c < 8; ++c) std::memcpy(blk + 160 + 256 * h + 32 * c + 4 * r, src[i].qs + 32 * h + 4 * c, 4);
        if constexpr (Five)
          for (int c = 0; c < 8; ++c) std::memcpy(blk + kQ4_Kx8BlockBytes + 32 * c + 4 * r, src[i].qh + 4 * c, 4);
      }
    }
}

template <class Block, bool Five>
void unpack_q45_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  constexpr i64 BB = Five ? kQ5_Kx8BlockBytes : kQ4_Kx8BlockBytes;
  const i64 nb = cols / ggml::QK_K, g = r / kQ4_0x8Rows, rr = r % kQ4_0x8Rows;
  auto* out = reinterpret_cast<Block*>(native_row);
  for (i64 i = 0; i < nb; ++i) {
    const std::uint8_t* blk = packed + (g * nb + i) * BB;
    std::memcpy(&out[i].d, blk + 2 * rr, 2);
    std::memcpy(&out[i].dmin, blk + 16 + 2 * rr, 2);
    std::memset(out[i].scales, 0, sizeof(out[i].scales));
    for (int j = 0; j < 8; ++j)
      set_scale_min(j, blk[32 + 8 * j + rr], blk[96 + 16 * (j / 2) + 2 * rr + (j & 1)], out[i].scales);
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 8; ++c) std::memcpy(out[i].qs + 32 * h + 4 * c, blk + 160 + 256 * h + 32 * c + 4 * rr, 4);
    if constexpr (Five)
      for (int c = 0; c < 8; ++c) std::memcpy(out[i].qh + 4 * c, blk + kQ4_Kx8BlockBytes + 32 * c + 4 * rr, 4);
  }
}

}  // namespace

i64 q4_Kx8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK_K) * kQ4_Kx8BlockBytes;
}
void repack_q4_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_q45_Kx8<ggml::block_q4_K, false>(native, rows, cols, dst);
}
void unpack_q4_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_q45_Kx8_row<ggml::block_q4_K, false>(packed, r, cols, native_row);
}

i64 q5_Kx8_nbytes(i64 rows, i64 cols) {
  return (rows + kQ4_0x8Rows - 1) / kQ4_0x8Rows * (cols / ggml::QK_K) * kQ5_Kx8BlockBytes;
}
void repack_q5_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst) {
  repack_q45_Kx8<ggml::block_q5_K, true>(native, rows, cols, dst);
}
void unpack_q5_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row) {
  unpack_q45_Kx8_row<ggml::block_q5_K, true>(packed, r, cols, native_row);
}

}  // namespace lowbit
