// Table-driven: every row of the format table, so a new format is covered by adding its row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "lowbit/format_table.hpp"
#include "lowbit/grid.hpp"
#include "lowbit/grouped_int.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

std::vector<QType> all_types() {
  std::vector<QType> t;
  for (const QTypeTraits& r : all_traits()) t.push_back(r.type);
  return t;
}

class FormatTable : public ::testing::TestWithParam<QType> {};

}  // namespace

TEST(FormatTableIds, UniqueNamesAndIdRanges) {
  std::set<int> ids;
  std::set<std::string> names;
  for (const QTypeTraits& r : all_traits()) {
    EXPECT_TRUE(ids.insert(static_cast<int>(r.type)).second) << r.name;
    EXPECT_TRUE(names.insert(r.name).second) << r.name;
    EXPECT_EQ(&traits_by_name(r.name), &traits(r.type));
  }
  EXPECT_EQ(static_cast<int>(QType::F16), 1);   // ggml ids are file-format contracts
  EXPECT_EQ(static_cast<int>(QType::BF16), 30);
  EXPECT_GE(static_cast<int>(QType::INT2), kLowbitTypeIdBase);
  EXPECT_THROW(traits_by_name("q9_9"), InvalidArgument);
  EXPECT_THROW(traits(static_cast<QType>(999)), Unsupported);
}

TEST_P(FormatTable, SizesAreConsistent) {
  const QTypeTraits& t = traits(GetParam());
  EXPECT_GT(t.block_size, 0);
  EXPECT_GT(t.type_size, 0);
  if (!t.is_quantized || t.needs_group_params)  // block formats add their scales to the codes
    EXPECT_DOUBLE_EQ(t.bits_per_weight(), static_cast<double>(t.bits));
  else
    EXPECT_GT(t.bits_per_weight(), static_cast<double>(t.bits));
  EXPECT_EQ(row_size(t.type, 0), 0);
  EXPECT_EQ(row_size(t.type, 64 * t.block_size), 64 * t.type_size);
  if (t.partial_block_ok) {
    EXPECT_EQ(row_size(t.type, 1), (t.bits + 7) / 8);
  } else {
    EXPECT_THROW(row_size(t.type, t.block_size + 1), InvalidArgument);
  }
}

TEST_P(FormatTable, RoundTripWithinTheFormatsBound) {
  const QTypeTraits& t = traits(GetParam());
  if (t.roundtrip_rel_tol == kRoundTripBoundOwnTests) GTEST_SKIP() << t.name << ": bound checked by its own tests";
  for (i64 n : test_data::tail_sizes()) {
    if (!t.partial_block_ok && n % t.block_size != 0) continue;
    std::vector<float> x = test_data::cos_data(n, 0.3f, 3.0f);
    if (n > 4) x[3] = 0.0f;  // exact zero must survive
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(row_size(t.type, n)) + 1, 0xAB);
    std::vector<float> y(static_cast<std::size_t>(n));
    if (!t.needs_group_params && t.is_quantized) {
      // self-contained block formats (ggml): their bounds live in test_ggml_formats.cpp
      std::fill(bytes.begin(), bytes.end() - 1, std::uint8_t{0});
      t.from_float_ref(x.data(), bytes.data(), n, nullptr);
    } else if (!t.needs_group_params) {
      // below a float format's normal range the error is absolute: half its smallest
      // subnormal (the element whose little-endian bytes are 1, 0, ...), e.g. 2^-10 for f8_e4m3
      float floor_err = 0.0f;
      if (t.block_size == 1) {
        std::vector<std::uint8_t> one(static_cast<std::size_t>(t.type_size), 0);
        one[0] = 1;
        t.to_float_ref(one.data(), &floor_err, 1, nullptr);
        floor_err *= 0.5f;
      }
      t.from_float_ref(x.data(), bytes.data(), n, nullptr);
      t.to_float_ref(bytes.data(), y.data(), n, nullptr);
      for (i64 i = 0; i < n; ++i)
        EXPECT_LE(std::fabs(y[i] - x[i]), t.roundtrip_rel_tol * std::fabs(x[i]) + floor_err)
            << t.name << " n=" << n << " i=" << i;
    } else {
      const i64 gs = 32;
      const i64 G = (n + gs - 1) / gs;
      std::vector<float> scales(static_cast<std::size_t>(G));
      std::vector<std::uint8_t> zeros(static_cast<std::size_t>(G));
      for (i64 g = 0; g < G; ++g) {
        float lo = x[g * gs], hi = lo;
        for (i64 i = g * gs; i < std::min(n, (g + 1) * gs); ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
        const Grid grid = minmax_grid(lo, hi, t.bits, /*sym=*/false);
        scales[g] = grid.scale;
        zeros[g] = static_cast<std::uint8_t>(grid.zero);
      }
      const GroupParams p{scales.data(), zeros.data(), gs};
      t.from_float_ref(x.data(), bytes.data(), n, &p);
      t.to_float_ref(bytes.data(), y.data(), n, &p);
      for (i64 i = 0; i < n; ++i)
        EXPECT_LE(std::fabs(y[i] - x[i]), 0.5f * scales[i / gs] * 1.0001f) << t.name << " n=" << n << " i=" << i;
    }
    EXPECT_EQ(bytes.back(), 0xAB) << t.name << ": wrote past row_size for n=" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(All, FormatTable, ::testing::ValuesIn(all_types()),
                         [](const ::testing::TestParamInfo<QType>& i) { return std::string(traits(i.param).name); });

TEST(GroupedCodes, PackUnpackRoundTripEveryWidth) {
  for (int bits = 1; bits <= 8; ++bits)
    for (i64 n : test_data::tail_sizes()) {
      std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
      for (i64 i = 0; i < n; ++i) codes[i] = static_cast<std::uint8_t>(test_data::splitmix(i * 31 + bits) & ((1u << bits) - 1));
      std::vector<std::uint8_t> packed(static_cast<std::size_t>((n * bits + 7) / 8), 0xff), back(codes.size());
      pack_codes(codes.data(), n, bits, packed.data());
      unpack_codes(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, codes) << "bits=" << bits << " n=" << n;
      const int pad = static_cast<int>(packed.size() * 8 - n * bits);
      if (pad > 0) EXPECT_EQ(packed.back() >> (8 - pad), 0) << "pad bits must be zero";
    }
}

TEST(GroupedCodes, LsbFirstBitOrder) {
  // 3-bit codes 1..5 -> bits 001 010 011 100 101 laid LSB first.
  const std::uint8_t codes[5] = {1, 2, 3, 4, 5};
  std::uint8_t packed[2];
  pack_codes(codes, 5, 3, packed);
  const unsigned stream = 1u | (2u << 3) | (3u << 6) | (4u << 9) | (5u << 12);
  EXPECT_EQ(packed[0], stream & 0xff);
  EXPECT_EQ(packed[1], (stream >> 8) & 0xff);
  const std::uint8_t c4[3] = {0x3, 0xa, 0xf};
  std::uint8_t p4[2];
  pack_codes(c4, 3, 4, p4);
  EXPECT_EQ(p4[0], 0xa3);
  EXPECT_EQ(p4[1], 0x0f);
}

TEST(GroupedShape, ResolvesGroupSize) {
  EXPECT_EQ(make_grouped_shape(4, 8, 100, -1).group_size, 100);
  EXPECT_EQ(make_grouped_shape(4, 8, 100, 0).per_tensor, true);
  EXPECT_EQ(make_grouped_shape(4, 8, 100, 0).scale_rows(), 1);
  EXPECT_EQ(make_grouped_shape(4, 8, 100, 32).n_groups(), 4);  // last group partial (4 columns)
  EXPECT_EQ(make_grouped_shape(4, 8, 100, 500).n_groups(), 1);
  EXPECT_EQ(make_grouped_shape(3, 8, 100, 32).row_bytes(), 38);
  EXPECT_THROW(make_grouped_shape(1, 8, 100, 32), InvalidArgument);
  EXPECT_THROW(make_grouped_shape(9, 8, 100, 32), InvalidArgument);
  EXPECT_THROW(make_grouped_shape(4, 8, 100, -2), InvalidArgument);
  EXPECT_THROW(make_grouped_shape(4, 0, 100, 32), InvalidArgument);
}
