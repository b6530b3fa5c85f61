// GPTQ checkpoint packing against words built by hand from REFERENCE.md §1.8.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "lowbit/gptq_layout.hpp"
#include "lowbit/grouped_int.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

// Pack codes [rows, cols] (one byte each) into the canonical layout and GPTQ-pack them.
struct Packed {
  std::vector<std::int32_t> qweight, qzeros;
};
Packed pack(const std::vector<std::uint8_t>& codes, const std::vector<std::uint8_t>& zeros, int bits, i64 rows,
            i64 cols, i64 gs, GptqFormat fmt) {
  const GroupedIntShape s = make_grouped_shape(bits, rows, cols, gs);
  std::vector<std::uint8_t> canon(static_cast<std::size_t>(rows * s.row_bytes()));
  for (i64 r = 0; r < rows; ++r) pack_codes(codes.data() + r * cols, cols, bits, canon.data() + r * s.row_bytes());
  Packed p;
  p.qweight.assign(static_cast<std::size_t>(cols * bits / 32 * rows), -1);
  p.qzeros.assign(static_cast<std::size_t>(s.n_groups() * rows * bits / 32), -1);
  gptq_pack(GroupedIntConstView{s, canon.data(), nullptr, zeros.data(), nullptr}, fmt, p.qweight.data(),
            p.qzeros.data());
  // And back.
  std::vector<std::uint8_t> canon2(canon.size()), zeros2(zeros.size());
  gptq_unpack(p.qweight.data(), p.qzeros.data(), fmt, GroupedIntMutView{s, canon2.data(), nullptr, zeros2.data()});
  EXPECT_EQ(canon2, canon);
  EXPECT_EQ(zeros2, zeros);
  return p;
}

}  // namespace

TEST(GptqLayout, FourBitWordsAndSymmetricZeros) {
  const i64 rows = 8, cols = 8;  // one word per column, one zero word
  std::vector<std::uint8_t> codes(rows * cols);
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) codes[r * cols + c] = static_cast<std::uint8_t>((r + c) & 0xf);
  std::vector<std::uint8_t> zeros(rows, 8);
  const Packed v1 = pack(codes, zeros, 4, rows, cols, -1, GptqFormat::V1);
  for (i64 r = 0; r < rows; ++r) {
    std::uint32_t want = 0;
    for (int k = 0; k < 8; ++k) want |= static_cast<std::uint32_t>((r + k) & 0xf) << (4 * k);
    EXPECT_EQ(static_cast<std::uint32_t>(v1.qweight[r]), want) << "column " << r;  // qweight[0, r]
  }
  EXPECT_EQ(static_cast<std::uint32_t>(v1.qzeros[0]), 0x77777777u);
  const Packed v2 = pack(codes, zeros, 4, rows, cols, -1, GptqFormat::V2);
  EXPECT_EQ(static_cast<std::uint32_t>(v2.qzeros[0]), 0x88888888u);
  EXPECT_EQ(v1.qweight, v2.qweight);
}

TEST(GptqLayout, TwoAndEightBitWords) {
  {
    const i64 rows = 16, cols = 16;
    std::vector<std::uint8_t> codes(rows * cols), zeros(rows, 2);
    for (i64 i = 0; i < rows * cols; ++i) codes[i] = static_cast<std::uint8_t>(i % 4);
    const Packed p = pack(codes, zeros, 2, rows, cols, -1, GptqFormat::V1);
    // row r's codes are (r*16 + k) % 4 = k % 4 -> 0,1,2,3,0,... -> 0b11100100 per byte
    for (i64 r = 0; r < rows; ++r) EXPECT_EQ(static_cast<std::uint32_t>(p.qweight[r]), 0xe4e4e4e4u);
    EXPECT_EQ(static_cast<std::uint32_t>(p.qzeros[0]), 0x55555555u);  // z-1 = 1 in every field
  }
  {
    const i64 rows = 4, cols = 8;
    std::vector<std::uint8_t> codes(rows * cols), zeros(rows, 128);
    for (i64 i = 0; i < rows * cols; ++i) codes[i] = static_cast<std::uint8_t>(i * 7);
    const Packed p = pack(codes, zeros, 8, rows, cols, -1, GptqFormat::V2);
    // qweight is [cols/4, rows]: word (w, r) holds inputs 4w..4w+3 of row r, LSB first.
    for (i64 w = 0; w < 2; ++w)
      for (i64 r = 0; r < rows; ++r) {
        std::uint32_t want = 0;
        for (int k = 0; k < 4; ++k) want |= static_cast<std::uint32_t>(codes[r * cols + 4 * w + k]) << (8 * k);
        EXPECT_EQ(static_cast<std::uint32_t>(p.qweight[w * rows + r]), want);
      }
    EXPECT_EQ(static_cast<std::uint32_t>(p.qzeros[0]), 0x80808080u);
  }
}

TEST(GptqLayout, ThreeBitCrossWordScheme) {
  const i64 rows = 32, cols = 32;
  std::vector<std::uint8_t> codes(rows * cols), zeros(rows * 1);
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) codes[r * cols + c] = static_cast<std::uint8_t>(test_data::splitmix(r * 97 + c) & 7);
  for (i64 r = 0; r < rows; ++r) zeros[r] = static_cast<std::uint8_t>(r % 8);
  const Packed p = pack(codes, zeros, 3, rows, cols, -1, GptqFormat::V1);
  for (i64 r = 0; r < rows; ++r) {
    const std::uint8_t* v = codes.data() + r * cols;
    // The word layout spelled out in REFERENCE.md §1.8.
    std::uint32_t w0 = 0, w1 = 0, w2 = 0;
    for (int k = 0; k < 10; ++k) w0 |= static_cast<std::uint32_t>(v[k]) << (3 * k);
    w0 |= static_cast<std::uint32_t>(v[10] & 3) << 30;
    w1 |= static_cast<std::uint32_t>(v[10] >> 2);
    for (int k = 11; k < 21; ++k) w1 |= static_cast<std::uint32_t>(v[k]) << (3 * (k - 11) + 1);
    w1 |= static_cast<std::uint32_t>(v[21] & 1) << 31;
    w2 |= static_cast<std::uint32_t>(v[21] >> 1);
    for (int k = 22; k < 32; ++k) w2 |= static_cast<std::uint32_t>(v[k]) << (3 * (k - 22) + 2);
    EXPECT_EQ(static_cast<std::uint32_t>(p.qweight[0 * rows + r]), w0);
    EXPECT_EQ(static_cast<std::uint32_t>(p.qweight[1 * rows + r]), w1);
    EXPECT_EQ(static_cast<std::uint32_t>(p.qweight[2 * rows + r]), w2);
  }
}

TEST(GptqLayout, V1ZeroOfZeroWrapsInsideItsField) {
  const i64 rows = 8, cols = 8;
  std::vector<std::uint8_t> codes(rows * cols, 0), zeros(rows, 5);
  zeros[3] = 0;  // AutoGPTQ would write -1 and corrupt the neighbour nibble
  const Packed p = pack(codes, zeros, 4, rows, cols, -1, GptqFormat::V1);
  EXPECT_EQ(static_cast<std::uint32_t>(p.qzeros[0]), 0x4444f444u);
}

TEST(GptqLayout, RejectsShapesThatDoNotFillWords) {
  std::vector<std::int32_t> a(64), b(64);
  std::vector<std::uint8_t> c(64), z(64);
  EXPECT_THROW(check_gptq_packable(4, 8, 12), InvalidArgument);
  EXPECT_THROW(check_gptq_packable(3, 32, 16), InvalidArgument);
  EXPECT_THROW(check_gptq_packable(4, 6, 8), InvalidArgument);
  EXPECT_THROW(check_gptq_packable(5, 32, 32), Unsupported);
  EXPECT_NO_THROW(check_gptq_packable(8, 4, 4));
}
