// Grouped integer formats (INT2 ... INT8): bit-stream packing, validation, dequantization
// and the reference row conversions of the format table. Layout: grouped_int.hpp.
#include "lowbit/grouped_int.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/formats_impl.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

GroupedIntShape make_grouped_shape(int bits, i64 rows, i64 cols, i64 group_size) {
  LOWBIT_CHECK(bits >= 2 && bits <= 8, "bits must be in 2..8, got ", bits);
  LOWBIT_CHECK(rows > 0 && cols > 0, "weight must be non-empty, got shape (", rows, ", ", cols, ")");
  LOWBIT_CHECK(group_size == -1 || group_size >= 0,
               "group_size must be -1 (per channel), 0 (per tensor) or > 0, got ", group_size);
  GroupedIntShape s;
  s.bits = bits;
  s.rows = rows;
  s.cols = cols;
  s.per_tensor = group_size == 0;
  s.group_size = (group_size <= 0 || group_size > cols) ? cols : group_size;
  return s;
}

void pack_codes(const std::uint8_t* codes, i64 n, int bits, std::uint8_t* dst) {
  const i64 nbytes = (n * bits + 7) / 8;
  if (bits == 8) {
    std::memcpy(dst, codes, static_cast<std::size_t>(n));
    return;
  }
  if (bits == 4) {
    for (i64 k = 0; k < n / 2; ++k)
      dst[k] = static_cast<std::uint8_t>((codes[2 * k] & 0xf) | (codes[2 * k + 1] << 4));
    if (n & 1) dst[n / 2] = static_cast<std::uint8_t>(codes[n - 1] & 0xf);
    return;
  }
  std::memset(dst, 0, static_cast<std::size_t>(nbytes));
  const unsigned mask = (1u << bits) - 1u;
  std::uint64_t acc = 0;  // bits not yet written, LSB first
  int have = 0;
  i64 out = 0;
  for (i64 i = 0; i < n; ++i) {
    acc |= static_cast<std::uint64_t>(codes[i] & mask) << have;
    have += bits;
    while (have >= 8) {
      dst[out++] = static_cast<std::uint8_t>(acc & 0xff);
      acc >>= 8;
      have -= 8;
    }
  }
  if (have > 0) dst[out] = static_cast<std::uint8_t>(acc & 0xff);
}

void unpack_codes(const std::uint8_t* src, i64 n, int bits, std::uint8_t* codes) {
  if (bits == 8) {
    std::memcpy(codes, src, static_cast<std::size_t>(n));
    return;
  }
  if (bits == 4) {
    for (i64 i = 0; i < n; ++i) codes[i] = static_cast<std::uint8_t>((src[i >> 1] >> ((i & 1) * 4)) & 0xf);
    return;
  }
  const unsigned mask = (1u << bits) - 1u;
  for (i64 i = 0; i < n; ++i) {
    const i64 bit = i * bits;
    const i64 byte = bit >> 3;
    const int off = static_cast<int>(bit & 7);
    unsigned v = src[byte] >> off;
    if (off + bits > 8) v |= static_cast<unsigned>(src[byte + 1]) << (8 - off);
    codes[i] = static_cast<std::uint8_t>(v & mask);
  }
}

void validate_grouped(const GroupedIntConstView& q) {
  const GroupedIntShape& s = q.shape;
  const i64 G = s.n_groups();
  const int maxq = s.maxq();
  for (i64 r = 0; r < s.scale_rows(); ++r)
    for (i64 g = 0; g < G; ++g) {
      const float sc = q.scales[r * G + g];
      LOWBIT_CHECK(std::isfinite(sc), "scales[", r, ", ", g, "] must be finite, got ", sc);
      LOWBIT_CHECK(q.zeros[r * G + g] <= maxq, "zeros[", r, ", ", g, "]=", int(q.zeros[r * G + g]),
                   " does not fit in ", s.bits, " bits");
    }
  if (q.g_idx != nullptr)
    for (i64 c = 0; c < s.cols; ++c)
      LOWBIT_CHECK(q.g_idx[c] >= 0 && q.g_idx[c] < G, "g_idx[", c, "]=", q.g_idx[c],
                   " must be in [0, ", G, ")");
}

void dequantize_grouped(const GroupedIntConstView& q, float* out) {
  const GroupedIntShape s = q.shape;
  const GridKernels& k = grid_kernels();
  const i64 G = s.n_groups();
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        unpack_codes(q.qweight + r * s.row_bytes(), s.cols, s.bits, codes.data());
        const i64 sr = s.per_tensor ? 0 : r;
        float* y = out + r * s.cols;
        if (q.g_idx == nullptr) {
          for (i64 g = 0; g < G; ++g) {
            const i64 c0 = g * s.group_size;
            const i64 len = std::min(s.group_size, s.cols - c0);
            k.dequantize_codes(codes.data() + c0, len, q.scales[sr * G + g],
                               static_cast<float>(q.zeros[sr * G + g]), y + c0);
          }
        } else {
          for (i64 c = 0; c < s.cols; ++c) {
            const i64 g = q.g_idx[c];
            y[c] = q.scales[sr * G + g] * (static_cast<float>(codes[c]) - static_cast<float>(q.zeros[sr * G + g]));
          }
        }
      },
      min_rows_per_thread(s.cols));
}

namespace formats {

namespace {

// Reference: one row, contiguous groups given by GroupParams.
template <int Bits>
void grouped_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  LOWBIT_CHECK(p != nullptr && p->group_size > 0, "int", Bits, " needs group scales and zeros");
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
  const int maxq = (1 << Bits) - 1;
  for (i64 c0 = 0, g = 0; c0 < n; c0 += p->group_size, ++g)
    scalar::kGridKernels.quantize_codes(x + c0, std::min(p->group_size, n - c0), p->scales[g],
                                        static_cast<float>(p->zeros[g]), maxq, codes.data() + c0);
  pack_codes(codes.data(), n, Bits, static_cast<std::uint8_t*>(dst));
}

template <int Bits>
void grouped_to_float(const void* src, float* y, i64 n, const GroupParams* p) {
  LOWBIT_CHECK(p != nullptr && p->group_size > 0, "int", Bits, " needs group scales and zeros");
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
  unpack_codes(static_cast<const std::uint8_t*>(src), n, Bits, codes.data());
  for (i64 c0 = 0, g = 0; c0 < n; c0 += p->group_size, ++g)
    scalar::kGridKernels.dequantize_codes(codes.data() + c0, std::min(p->group_size, n - c0),
                                          p->scales[g], static_cast<float>(p->zeros[g]), y + c0);
}

}  // namespace

const FromFloatFn grouped_from_float_ref_table[9] = {
    nullptr, nullptr, grouped_from_float<2>, grouped_from_float<3>, grouped_from_float<4>,
    grouped_from_float<5>, grouped_from_float<6>, grouped_from_float<7>, grouped_from_float<8>};
const ToFloatFn grouped_to_float_ref_table[9] = {
    nullptr, nullptr, grouped_to_float<2>, grouped_to_float<3>, grouped_to_float<4>,
    grouped_to_float<5>, grouped_to_float<6>, grouped_to_float<7>, grouped_to_float<8>};

}  // namespace formats

}  // namespace lowbit
