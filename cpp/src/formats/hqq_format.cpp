// Reference row conversions of the HQQ formats (hqq1 ... hqq8) for the format table.
// A row is the grouped bit stream of grouped_int.hpp; what differs is the zero point, a float
// (GroupParams::float_zeros; an integer `zeros` array is accepted as the special case).
//   to_float:   y = (code - zero[g]) * scale[g]                      (hqq's dequantization)
//   from_float: code = clamp(round_half_even(x / scale[g] + zero[g]), 0, 2^bits - 1)
// Whole-matrix quantization (the solver, axis 0 grouping) lives in quantizers/hqq.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/formats_impl.hpp"
#include "lowbit/grouped_int.hpp"

namespace lowbit::formats {

namespace {

float zero_of(const GroupParams* p, i64 g) {
  return p->float_zeros != nullptr ? p->float_zeros[g] : static_cast<float>(p->zeros[g]);
}

void check_params(const GroupParams* p, int bits) {
  LOWBIT_CHECK(p != nullptr && p->group_size > 0 && p->scales != nullptr &&
                   (p->float_zeros != nullptr || p->zeros != nullptr),
               "hqq", bits, " needs group scales and zeros");
}

template <int Bits>
void hqq_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  check_params(p, Bits);
  const float maxq = static_cast<float>((1 << Bits) - 1);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) {
    const i64 g = i / p->group_size;
    const float q = std::nearbyint(x[i] / p->scales[g] + zero_of(p, g));
    codes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(std::min(std::max(q, 0.0f), maxq));
  }
  pack_codes(codes.data(), n, Bits, static_cast<std::uint8_t*>(dst));
}

template <int Bits>
void hqq_to_float(const void* src, float* y, i64 n, const GroupParams* p) {
  check_params(p, Bits);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
  unpack_codes(static_cast<const std::uint8_t*>(src), n, Bits, codes.data());
  for (i64 i = 0; i < n; ++i) {
    const i64 g = i / p->group_size;
    y[i] = (static_cast<float>(codes[static_cast<std::size_t>(i)]) - zero_of(p, g)) * p->scales[g];
  }
}

}  // namespace

const FromFloatFn hqq_from_float_ref_table[9] = {
    nullptr, hqq_from_float<1>, hqq_from_float<2>, hqq_from_float<3>, hqq_from_float<4>,
    hqq_from_float<5>, hqq_from_float<6>, nullptr, hqq_from_float<8>};
const ToFloatFn hqq_to_float_ref_table[9] = {
    nullptr, hqq_to_float<1>, hqq_to_float<2>, hqq_to_float<3>, hqq_to_float<4>,
    hqq_to_float<5>, hqq_to_float<6>, nullptr, hqq_to_float<8>};

}  // namespace lowbit::formats
