// HQQ in C++: thread-count independence, the SIMD step against its scalar tail (odd group
// sizes), the float-zero row conversion, hqq's min/max guards and bad input. Parity with the
// hqq package and the NumPy transcription is in tests/python/test_hqq.py.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "lowbit/format_table.hpp"
#include "lowbit/grouped_int.hpp"
#include "lowbit/hqq.hpp"
#include "lowbit/parallel.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

struct Result {
  std::vector<std::uint8_t> qweight;
  std::vector<float> scale, zero;
  HqqStats stats;
};

Result run(const std::vector<float>& w, i64 rows, i64 cols, const HqqParams& p) {
  const HqqShape s = hqq_shape(rows, cols, p);
  Result r;
  r.qweight.assign(static_cast<std::size_t>(rows * s.row_bytes()), 0);
  r.scale.assign(static_cast<std::size_t>(s.n_groups()), 0.0f);
  r.zero.assign(r.scale.size(), 0.0f);
  r.stats = hqq_quantize(AnyMatrixView(w.data(), rows, cols), p, r.qweight.data(), r.scale.data(), r.zero.data());
  return r;
}

}  // namespace

TEST(Hqq, BitIdenticalForAnyThreadCount) {
  const i64 rows = 96, cols = 640;
  const std::vector<float> w = test_data::uniform_data(rows * cols, 7, -0.05f, 0.05f);
  for (int axis : {0, 1}) {
    HqqParams p;
    p.axis = axis;
    set_num_threads(1);
    const Result base = run(w, rows, cols, p);
    for (int t : {2, 3, 4}) {
      set_num_threads(t);
      const Result r = run(w, rows, cols, p);
      EXPECT_EQ(r.qweight, base.qweight) << "axis " << axis << " threads " << t;
      EXPECT_EQ(r.zero, base.zero);
      EXPECT_EQ(r.scale, base.scale);
      EXPECT_EQ(r.stats.errors, base.stats.errors);
    }
  }
  set_num_threads(0);
}

TEST(Hqq, ErrorsDecreaseUntilTheStopAndDequantizeIsTheFormula) {
  // Odd group sizes exercise the scalar tail of the 4-lane step.
  for (i64 gs : {5, 12, 60}) {
    const i64 rows = 10, cols = 60;
    const std::vector<float> w = test_data::cos_data(rows * cols, 0.2f, 0.03f);
    HqqParams p;
    p.group_size = gs;
    p.nbits = 3;
    const Result r = run(w, rows, cols, p);
    ASSERT_GE(r.stats.steps, 2);
    for (std::size_t i = 1; i + 1 < r.stats.errors.size(); ++i) EXPECT_LT(r.stats.errors[i], r.stats.errors[i - 1]);
    const HqqShape s = hqq_shape(rows, cols, p);
    std::vector<float> y(static_cast<std::size_t>(rows * cols));
    hqq_dequantize(s, r.qweight.data(), r.scale.data(), r.zero.data(), y.data());
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
    for (i64 row = 0; row < rows; ++row) {
      unpack_codes(r.qweight.data() + row * s.row_bytes(), cols, 3, codes.data());
      for (i64 c = 0; c < cols; ++c) {
        const i64 g = (row * cols + c) / gs;
        EXPECT_EQ(y[row * cols + c], (static_cast<float>(codes[c]) - r.zero[g]) * r.scale[g]);
      }
    }
  }
}

TEST(Hqq, Axis0GroupsAreStridedOverTheFlattenedTensor) {
  // Every element of group g (axis 0) is flat[g + i*G]: make group 0 a constant 3 and check it
  // comes back exactly (hqq: range <= 1e-4 -> inverse scale 1, zero -3, code 0).
  const i64 rows = 8, cols = 16, gs = 4, G = rows * cols / gs;
  std::vector<float> w = test_data::cos_data(rows * cols, 0.0f, 0.1f);
  for (i64 i = 0; i < gs; ++i) w[static_cast<std::size_t>(i * G)] = 3.0f;
  HqqParams p;
  p.group_size = gs;
  p.axis = 0;
  p.optimize = false;
  const Result r = run(w, rows, cols, p);
  EXPECT_EQ(r.scale[0], 1.0f);
  EXPECT_EQ(r.zero[0], -3.0f);
  std::vector<float> y(w.size());
  hqq_dequantize(hqq_shape(rows, cols, p), r.qweight.data(), r.scale.data(), r.zero.data(), y.data());
  for (i64 i = 0; i < gs; ++i) EXPECT_EQ(y[static_cast<std::size_t>(i * G)], 3.0f);
}

TEST(Hqq, RowConversionUsesFloatZeros) {
  const QTypeTraits& t = traits_by_name("hqq4");
  EXPECT_TRUE(t.needs_group_params);
  const std::vector<float> scales = {0.5f, 0.25f};
  const std::vector<float> zeros = {2.5f, 7.25f};
  const std::vector<float> x = {-1.0f, 0.0f, 0.3f, 2.0f, -1.5f, 0.1f, 0.6f, 1.0f};
  GroupParams gp{scales.data(), nullptr, 4};
  gp.float_zeros = zeros.data();
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(row_size(t.type, 8)));
  std::vector<float> y(8);
  t.from_float_ref(x.data(), bytes.data(), 8, &gp);
  t.to_float_ref(bytes.data(), y.data(), 8, &gp);
  for (int i = 0; i < 8; ++i) {
    const float s = scales[i / 4], z = zeros[i / 4];
    const float code = std::min(std::max(std::nearbyint(x[i] / s + z), 0.0f), 15.0f);
    EXPECT_EQ(y[i], (code - z) * s) << i;
  }
}

TEST(Hqq, BadInput) {
  const std::vector<float> w = test_data::cos_data(6 * 10);
  HqqParams p;
  p.group_size = 7;
  EXPECT_THROW(run(w, 6, 10, p), InvalidArgument);  // 7 does not divide 60
  p.group_size = 6;
  p.nbits = 7;
  EXPECT_THROW(run(w, 6, 10, p), InvalidArgument);
  p.nbits = 4;
  p.lp_norm = 1.5;
  EXPECT_THROW(run(w, 6, 10, p), InvalidArgument);
  p.lp_norm = 0.7;
  std::vector<float> bad = w;
  bad[13] = std::numeric_limits<float>::quiet_NaN();
  try {
    run(bad, 6, 10, p);
    FAIL() << "NaN accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("W[1, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(hqq_shape(0, 10, p), InvalidArgument);
}
