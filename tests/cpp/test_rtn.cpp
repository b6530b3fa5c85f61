#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/grid.hpp"
#include "lowbit/grouped_int.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/rtn.hpp"
#include "test_helpers.hpp"

using namespace lowbit;

namespace {

struct Result {
  GroupedIntShape shape;
  std::vector<std::uint8_t> qweight, zeros;
  std::vector<float> scales, deq;
};

Result run_rtn(const std::vector<float>& w, i64 rows, i64 cols, RtnParams p) {
  Result r;
  const AnyMatrixView W(w.data(), rows, cols);
  r.shape = rtn_output_shape(W, p);
  r.qweight.assign(static_cast<std::size_t>(rows * r.shape.row_bytes()), 0);
  r.scales.assign(static_cast<std::size_t>(r.shape.scale_rows() * r.shape.n_groups()), 0);
  r.zeros.assign(r.scales.size(), 0);
  rtn_quantize(W, p, GroupedIntMutView{r.shape, r.qweight.data(), r.scales.data(), r.zeros.data()});
  r.deq.assign(static_cast<std::size_t>(rows * cols), 0);
  dequantize_grouped(GroupedIntConstView{r.shape, r.qweight.data(), r.scales.data(), r.zeros.data(), nullptr},
                     r.deq.data());
  return r;
}

}  // namespace

TEST(Grid, MatchesTheReferenceFormulas) {
  Grid g = minmax_grid(-1.0f, 3.0f, 4, false);  // asym: s = 4/15, z = round(1/s) = round(3.75) = 4
  EXPECT_FLOAT_EQ(g.scale, 4.0f / 15.0f);
  EXPECT_EQ(g.zero, 4.0f);
  g = minmax_grid(-1.0f, 3.0f, 4, true);  // sym: amax 3, s = 6/15, z = 8
  EXPECT_FLOAT_EQ(g.scale, 6.0f / 15.0f);
  EXPECT_EQ(g.zero, 8.0f);
  g = minmax_grid(0.5f, 2.0f, 4, true);  // no negatives: still symmetric (documented fix)
  EXPECT_FLOAT_EQ(g.scale, 4.0f / 15.0f);
  g = minmax_grid(0.0f, 0.0f, 3, false);  // all zero: [-1, 1]
  EXPECT_FLOAT_EQ(g.scale, 2.0f / 7.0f);
  g = minmax_grid(-3e38f, 3e38f, 8, false);  // float32 span overflows: computed in double
  EXPECT_TRUE(std::isfinite(g.scale));
  EXPECT_GT(g.scale, 0.0f);
  g = minmax_grid(0.0f, 1e-45f, 4, true);  // subnormal: floored, never zero
  EXPECT_GT(g.scale, 0.0f);
}

TEST(Rtn, EveryWeightWithinHalfAStepAndZeroExact) {
  const i64 rows = 37, cols = 203;  // odd sizes, partial last group
  std::vector<float> w = test_data::uniform_data(rows * cols, 11, -2.0f, 1.0f);
  w[5] = 0.0f;
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {true, false})
      for (i64 gs : {i64{-1}, i64{0}, i64{32}, i64{64}, i64{203}}) {
        const Result r = run_rtn(w, rows, cols, RtnParams{bits, gs, sym});
        const i64 G = r.shape.n_groups();
        for (i64 i = 0; i < rows; ++i)
          for (i64 c = 0; c < cols; ++c) {
            const i64 si = r.shape.per_tensor ? 0 : i * G + c / r.shape.group_size;
            const float s = r.scales[si];
            const float err = std::fabs(r.deq[i * cols + c] - w[i * cols + c]);
            ASSERT_LE(err, 0.5f * s * (1 + std::ldexp(1.0f, bits - 22))) << "bits=" << bits << " sym=" << sym << " gs=" << gs;
          }
        EXPECT_EQ(r.deq[5], 0.0f) << "zero must be representable exactly";
      }
}

TEST(Rtn, AllZeroRowsAndConstantRows) {
  const i64 rows = 3, cols = 40;
  std::vector<float> w(rows * cols, 0.0f);
  for (i64 c = 0; c < cols; ++c) w[cols + c] = 7.5f;  // constant row
  for (bool sym : {true, false}) {
    const Result r = run_rtn(w, rows, cols, RtnParams{4, 16, sym});
    for (i64 c = 0; c < cols; ++c) {
      EXPECT_EQ(r.deq[c], 0.0f);
      EXPECT_NEAR(r.deq[cols + c], 7.5f, 0.5f * r.scales[r.shape.n_groups()] + 1e-6f);
    }
  }
}

TEST(Rtn, NonFiniteWeightIsAnErrorNamingItsPosition) {
  std::vector<float> w = test_data::uniform_data(6 * 50, 3);
  w[4 * 50 + 17] = NAN;
  w[5 * 50 + 1] = INFINITY;
  set_num_threads(2);
  try {
    run_rtn(w, 6, 50, RtnParams{4, 16, true});
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("W[4, 17]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run_rtn(w, 6, 50, RtnParams{4, 0, true}), InvalidArgument);
  set_num_threads(0);
}

TEST(Rtn, IdenticalBytesForOneAndTwoThreadsAndEveryIsa) {
  const i64 rows = 301, cols = 515;
  const std::vector<float> w = test_data::uniform_data(rows * cols, 9);
  const Isa before = active_isa();
  set_num_threads(1);
  force_isa(Isa::Scalar);
  const Result ref = run_rtn(w, rows, cols, RtnParams{3, 128, false});
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    force_isa(isa);
    for (int t : {1, 2}) {
      set_num_threads(t);
      const Result r = run_rtn(w, rows, cols, RtnParams{3, 128, false});
      EXPECT_EQ(r.qweight, ref.qweight) << isa_name(isa) << " threads=" << t;
      EXPECT_EQ(r.zeros, ref.zeros);
      EXPECT_EQ(0, std::memcmp(r.scales.data(), ref.scales.data(), ref.scales.size() * 4));
    }
  }
  force_isa(before);
  set_num_threads(0);
}

TEST(Rtn, StridedAndHalfInputsMatchContiguousFloat) {
  const i64 rows = 20, cols = 70;
  const std::vector<float> w = test_data::uniform_data(rows * cols, 4);
  // Transposed view of a [cols, rows] buffer.
  std::vector<float> t(w.size());
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) t[c * rows + r] = w[r * cols + c];
  const RtnParams p{4, 32, true};
  const Result ref = run_rtn(w, rows, cols, p);
  const AnyMatrixView tv(t.data(), DType::F32, rows, cols, 1, rows);
  Result r = ref;
  rtn_quantize(tv, p, GroupedIntMutView{r.shape, r.qweight.data(), r.scales.data(), r.zeros.data()});
  EXPECT_EQ(r.qweight, ref.qweight);
  // float16 input equals float32 input of the same (half-rounded) values.
  std::vector<std::uint16_t> h(w.size());
  std::vector<float> wh(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) h[i] = fp32_to_fp16(w[i]), wh[i] = fp16_to_fp32(h[i]);
  const Result refh = run_rtn(wh, rows, cols, p);
  rtn_quantize(AnyMatrixView(h.data(), DType::F16, rows, cols, cols, 1), p,
               GroupedIntMutView{r.shape, r.qweight.data(), r.scales.data(), r.zeros.data()});
  EXPECT_EQ(r.qweight, refh.qweight);
}
