// GPTQ checkpoint packing (int32 words along the input dimension), see gptq_layout.hpp.
#include "lowbit/gptq_layout.hpp"

#include <vector>

#include "lowbit/parallel.hpp"

namespace lowbit {

void check_gptq_packable(int bits, i64 rows, i64 cols) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw Unsupported(str_cat("the GPTQ checkpoint layout packs 2, 3, 4 or 8 bits, got ", bits));
  const i64 per = bits == 3 ? 32 : 32 / bits;  // values per whole number of words
  LOWBIT_CHECK(cols % per == 0, "GPTQ layout with bits=", bits, " needs in_features (", cols,
               ") to be a multiple of ", per);
  LOWBIT_CHECK(rows % per == 0, "GPTQ layout with bits=", bits, " needs out_features (", rows,
               ") to be a multiple of ", per, " (qzeros pack along the output dimension)");
}

void pack_bits_u32(const std::uint8_t* values, i64 n, int bits, std::uint32_t* dst, i64 dst_stride) {
  LOWBIT_CHECK((n * bits) % 32 == 0, "pack_bits_u32: n*bits=", n * bits, " is not a multiple of 32");
  const i64 nwords = n * bits / 32;
  for (i64 w = 0; w < nwords; ++w) dst[w * dst_stride] = 0;
  const std::uint32_t mask = (1u << bits) - 1u;
  for (i64 i = 0; i < n; ++i) {
    const std::uint32_t v = values[i] & mask;
    const i64 bit = i * bits;
    const i64 w = bit / 32;
    const int off = static_cast<int>(bit % 32);
    dst[w * dst_stride] |= v << off;
    if (off + bits > 32) dst[(w + 1) * dst_stride] |= v >> (32 - off);  // 3-bit: crosses a word
  }
}

void unpack_bits_u32(const std::uint32_t* src, i64 src_stride, i64 n, int bits, std::uint8_t* values) {
  const std::uint32_t mask = (1u << bits) - 1u;
  for (i64 i = 0; i < n; ++i) {
    const i64 bit = i * bits;
    const i64 w = bit / 32;
    const int off = static_cast<int>(bit % 32);
    std::uint32_t v = src[w * src_stride] >> off;
    if (off + bits > 32) v |= src[(w + 1) * src_stride] << (32 - off);
    values[i] = static_cast<std::uint8_t>(v & mask);
  }
}

void gptq_pack(const GroupedIntConstView& q, GptqFormat fmt, std::int32_t* qweight, std::int32_t* qzeros) {
  const GroupedIntShape& s = q.shape;
  LOWBIT_CHECK(!s.per_tensor, "the GPTQ layout has per-channel or per-group scales, not per-tensor");
  check_gptq_packable(s.bits, s.rows, s.cols);
  const i64 G = s.n_groups();
  const int maxq = s.maxq();
  auto* qw = reinterpret_cast<std::uint32_t*>(qweight);
  // qweight[:, r] is the bit stream of row r's codes: column-strided writes by `rows`.
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        unpack_codes(q.qweight + r * s.row_bytes(), s.cols, s.bits, codes.data());
        pack_bits_u32(codes.data(), s.cols, s.bits, qw + r, s.rows);
      },
      64);
  // qzeros[g, :] is the bit stream of group g's zero points across output rows.
  const int offset = fmt == GptqFormat::V1 ? 1 : 0;
  auto* qz = reinterpret_cast<std::uint32_t*>(qzeros);
  const i64 zwords = s.rows * s.bits / 32;
  parallel_for(
      G,
      [&](i64 g) {
        std::vector<std::uint8_t> z(static_cast<std::size_t>(s.rows));
        for (i64 r = 0; r < s.rows; ++r)
          z[static_cast<std::size_t>(r)] = static_cast<std::uint8_t>((q.zeros[r * G + g] - offset) & maxq);
        pack_bits_u32(z.data(), s.rows, s.bits, qz + g * zwords, 1);
      },
      4);
}

void gptq_unpack(const std::int32_t* qweight, const std::int32_t* qzeros, GptqFormat fmt,
                 const GroupedIntMutView& out) {
  const GroupedIntShape& s = out.shape;
  LOWBIT_CHECK(!s.per_tensor, "the GPTQ layout has per-channel or per-group scales, not per-tensor");
  check_gptq_packable(s.bits, s.rows, s.cols);
  const i64 G = s.n_groups();
  const int maxq = s.maxq();
  const auto* qw = reinterpret_cast<const std::uint32_t*>(qweight);
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        unpack_bits_u32(qw + r, s.rows, s.cols, s.bits, codes.data());
        pack_codes(codes.data(), s.cols, s.bits, out.qweight + r * s.row_bytes());
      },
      64);
  const int offset = fmt == GptqFormat::V1 ? 1 : 0;
  const auto* qz = reinterpret_cast<const std::uint32_t*>(qzeros);
  const i64 zwords = s.rows * s.bits / 32;
  parallel_for(
      G,
      [&](i64 g) {
        std::vector<std::uint8_t> z(static_cast<std::size_t>(s.rows));
        unpack_bits_u32(qz + g * zwords, 1, s.rows, s.bits, z.data());
        for (i64 r = 0; r < s.rows; ++r)
          out.zeros[r * G + g] = static_cast<std::uint8_t>((z[static_cast<std::size_t>(r)] + offset) & maxq);
      },
      4);
}

}  // namespace lowbit
