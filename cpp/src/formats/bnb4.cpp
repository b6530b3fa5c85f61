// bitsandbytes NF4 / FP4 blockwise 4-bit codes and the 8-bit dynamic blockwise codes of their
// double quantization. Definitions: lowbit/bnb.hpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "lowbit/bnb.hpp"
#include "lowbit/formats_impl.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit::bnb {

namespace {

// Values of create_normal_map(offset=0.9677083, use_extra_value=True), as float32.
constexpr std::array<float, 16> kNF4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

// bnb's fp4 in index order: bit 3 is the sign; both zeros are +0 (bnb writes the second as
// the Python int -0, which is 0).
std::array<float, 16> make_fp4() {
  const float raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, 0, -0.0625f, -8, -12, -4, -6, -2, -3};
  std::array<float, 16> c{};
  for (int i = 0; i < 16; ++i) c[i] = raw[i] / 12.0f;
  return c;
}

// Sorted view of a 16-entry table: order[k] = index of the k-th smallest (stable for ties),
// bounds = float32 midpoints between neighbours in that order.
struct Sorted4 {
  std::array<std::uint8_t, 16> order{};
  std::array<float, 15> bounds{};
};

Sorted4 make_sorted4(const float* code) {
  Sorted4 s;
  std::array<int, 16> idx{};
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return code[a] < code[b]; });
  for (int k = 0; k < 16; ++k) s.order[k] = static_cast<std::uint8_t>(idx[k]);
  for (int k = 0; k < 15; ++k) s.bounds[k] = (code[idx[k]] + code[idx[k + 1]]) / 2.0f;
  return s;
}

const Sorted4& sorted4(Code4 t) {
  static const Sorted4 nf4 = make_sorted4(kNF4.data());
  static const Sorted4 fp4 = make_sorted4(code4(Code4::FP4));
  return t == Code4::NF4 ? nf4 : fp4;
}

// Number of bounds strictly below s: torch.bucketize(s, bounds, right=False).
inline int bucket4(const Sorted4& st, float s) {
  int k = 0;
  for (int j = 0; j < 15; ++j) k += st.bounds[j] < s ? 1 : 0;
  return k;
}

inline float clamp1(float s) { return std::min(1.0f, std::max(-1.0f, s)); }

constexpr float kAbsmaxFloor = 1e-38f;  // bnb's clamp(min=1e-38) before dividing

void check_finite(const float* x, i64 n, const char* what) {
  for (i64 i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw InvalidArgument(str_cat(what, " must be finite: element ", i, " is ", x[i]));
}

// Scaled values of one block: full blocks multiply by the reciprocal, the tail block divides
// (bnb's two code paths round differently and we follow both).
struct BlockScale {
  float absmax_stored;
  float recip;  // used when !tail
  float denom;  // used when tail
  bool tail;
  float scale(float v) const { return clamp1(tail ? v / denom : v * recip); }
};

BlockScale block_scale(const float* x, i64 len, bool tail) {
  float am = 0.0f;
  for (i64 i = 0; i < len; ++i) am = std::max(am, std::fabs(x[i]));
  const float clamped = std::max(am, kAbsmaxFloor);
  return BlockScale{tail ? clamped : am, 1.0f / clamped, clamped, tail};
}

// The 256-entry signed dynamic map, built as bnb's create_dynamic_map(signed=True, 7, 8):
// for i in 0..6, 2^i float32 means of linspace(0.1, 1, 2^i + 1) (torch's linspace: the first
// half from the start, the second half from the end, each a fused multiply-add), times
// +-10^(i-6) in float32; plus 0 and 1. Pinned bit for bit by the golden fixture.
std::vector<float> make_dynamic_map() {
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const int steps = (1 << i) + 1;
    std::vector<float> b(static_cast<std::size_t>(steps));
    const float start = 0.1f, end = 1.0f;
    const float step = (end - start) / static_cast<float>(steps - 1);
    const int halfway = steps / 2;
    // fused multiply-add, one rounding: what torch's vectorized CPU linspace computes
    for (int j = 0; j < steps; ++j)
      b[j] = j < halfway ? std::fma(step, static_cast<float>(j), start)
                         : std::fma(-step, static_cast<float>(steps - j - 1), end);
    const float scale = static_cast<float>(std::pow(10.0, i - 6));
    for (int j = 0; j + 1 < steps; ++j) {
      const float mean = (b[j] + b[j + 1]) / 2.0f;
      data.push_back(scale * mean);
      data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return data;
}

}  // namespace

const float* code4(Code4 type) {
  static const std::array<float, 16> fp4 = make_fp4();
  return type == Code4::NF4 ? kNF4.data() : fp4.data();
}

const std::vector<float>& dynamic_map() {
  static const std::vector<float> m = make_dynamic_map();
  return m;
}

void check_blocksize4(i64 blocksize) {
  LOWBIT_CHECK(blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0,
               "blocksize must be a power of two in 32..4096 (bitsandbytes' 4-bit block sizes), got ", blocksize);
}

std::vector<float> midpoints(const float* sorted, int n) {
  std::vector<float> b(static_cast<std::size_t>(n > 0 ? n - 1 : 0));
  for (int k = 0; k + 1 < n; ++k) b[k] = (sorted[k] + sorted[k + 1]) / 2.0f;
  return b;
}

void quantize4(const float* x, i64 n, Code4 type, i64 blocksize, std::uint8_t* packed, float* absmax) {
  LOWBIT_CHECK(n > 0, "the tensor to quantize must be non-empty, got ", n, " elements");
  check_blocksize4(blocksize);
  check_finite(x, n, "the weights");
  const Sorted4& st = sorted4(type);
  const i64 n_blocks = (n + blocksize - 1) / blocksize;
  // blocksize is even, so every block starts on a byte boundary and blocks write disjoint bytes
  parallel_for(
      n_blocks,
      [&](i64 b) {
        const i64 lo = b * blocksize, len = std::min(blocksize, n - lo);
        const BlockScale bs = block_scale(x + lo, len, len < blocksize);
        absmax[b] = bs.absmax_stored;
        for (i64 i = 0; i < len; i += 2) {
          const std::uint8_t hi = st.order[bucket4(st, bs.scale(x[lo + i]))];
          // an odd total count pads one 0.0 (bnb pads after scaling): code of 0
          const std::uint8_t low = i + 1 < len ? st.order[bucket4(st, bs.scale(x[lo + i + 1]))]
                                               : st.order[bucket4(st, 0.0f)];
          packed[(lo + i) / 2] = static_cast<std::uint8_t>((hi << 4) | low);
        }
      },
      std::max<i64>(1, 16384 / blocksize));
}

void dequantize4(const std::uint8_t* packed, const float* absmax, i64 n, Code4 type, i64 blocksize, float* y) {
  LOWBIT_CHECK(n >= 0, "n must be >= 0, got ", n);
  check_blocksize4(blocksize);
  const float* c = code4(type);
  const i64 n_blocks = (n + blocksize - 1) / blocksize;
  parallel_for(
      n_blocks,
      [&](i64 b) {
        const i64 lo = b * blocksize, hi = std::min(n, lo + blocksize);
        const float a = absmax[b];
        for (i64 i = lo; i < hi; ++i) {
          const std::uint8_t byte = packed[i / 2];
          y[i] = c[(i & 1) ? (byte & 0x0f) : (byte >> 4)] * a;
        }
      },
      std::max<i64>(1, 16384 / blocksize));
}

void quantize_blockwise8(const float* x, i64 n, const float* code, i64 blocksize, std::uint8_t* q, float* absmax) {
  LOWBIT_CHECK(n > 0, "the values to quantize must be non-empty, got ", n, " elements");
  LOWBIT_CHECK(blocksize > 0, "blocksize must be > 0, got ", blocksize);
  check_finite(x, n, "the values");
  for (int k = 0; k + 1 < 256; ++k)
    LOWBIT_CHECK(code[k] <= code[k + 1], "code must be sorted ascending; code[", k, "]=", code[k], " > code[", k + 1,
                 "]=", code[k + 1]);
  const std::vector<float> bounds = midpoints(code, 256);
  const i64 n_blocks = (n + blocksize - 1) / blocksize;
  parallel_for(
      n_blocks,
      [&](i64 b) {
        const i64 lo = b * blocksize, len = std::min(blocksize, n - lo);
        const BlockScale bs = block_scale(x + lo, len, len < blocksize);
        absmax[b] = bs.absmax_stored;
        for (i64 i = 0; i < len; ++i) {
          const float s = bs.scale(x[lo + i]);
          q[lo + i] = static_cast<std::uint8_t>(std::lower_bound(bounds.begin(), bounds.end(), s) - bounds.begin());
        }
      },
      std::max<i64>(1, 16384 / blocksize));
}

void dequantize_blockwise8(const std::uint8_t* q, const float* absmax, const float* code, i64 n, i64 blocksize,
                           float offset, float* y) {
  LOWBIT_CHECK(blocksize > 0, "blocksize must be > 0, got ", blocksize);
  for (i64 i = 0; i < n; ++i) y[i] = code[q[i]] * absmax[i / blocksize] + offset;
}

float double_quantize(const float* absmax, i64 n, i64 blocksize2, std::uint8_t* qabsmax, float* absmax2) {
  LOWBIT_CHECK(n > 0, "absmax must be non-empty");
  check_finite(absmax, n, "absmax");
  double sum = 0.0;
  for (i64 i = 0; i < n; ++i) sum += absmax[i];
  const float offset = static_cast<float>(sum / static_cast<double>(n));
  std::vector<float> centered(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) centered[i] = absmax[i] - offset;
  quantize_blockwise8(centered.data(), n, dynamic_map().data(), blocksize2, qabsmax, absmax2);
  return offset;
}

}  // namespace lowbit::bnb

// ---- format-table rows: one row of codes with its absmax per group (GroupParams.scales) ----
namespace lowbit::formats {

namespace {

template <bnb::Code4 T>
void code4_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  LOWBIT_CHECK(p != nullptr && p->scales != nullptr && p->group_size > 0,
               "nf4/fp4 rows need their absmax per group (GroupParams.scales, group_size)");
  const bnb::Sorted4& st = bnb::sorted4(T);
  auto* d = static_cast<std::uint8_t*>(dst);
  for (i64 i = 0; i < n; i += 2) {
    std::uint8_t pair[2] = {0, 0};
    for (i64 j = 0; j < 2; ++j) {
      if (i + j >= n) {
        pair[j] = st.order[bnb::bucket4(st, 0.0f)];
        break;
      }
      const float a = std::max(p->scales[(i + j) / p->group_size], bnb::kAbsmaxFloor);
      pair[j] = st.order[bnb::bucket4(st, bnb::clamp1(x[i + j] * (1.0f / a)))];
    }
    d[i / 2] = static_cast<std::uint8_t>((pair[0] << 4) | pair[1]);
  }
}

template <bnb::Code4 T>
void code4_to_float(const void* src, float* y, i64 n, const GroupParams* p) {
  LOWBIT_CHECK(p != nullptr && p->scales != nullptr && p->group_size > 0,
               "nf4/fp4 rows need their absmax per group (GroupParams.scales, group_size)");
  const float* c = bnb::code4(T);
  const auto* s = static_cast<const std::uint8_t*>(src);
  for (i64 i = 0; i < n; ++i) y[i] = c[(i & 1) ? (s[i / 2] & 0x0f) : (s[i / 2] >> 4)] * p->scales[i / p->group_size];
}

}  // namespace

void nf4_from_float_ref(const float* x, void* dst, i64 n, const GroupParams* p) {
  code4_from_float<bnb::Code4::NF4>(x, dst, n, p);
}
void nf4_to_float_ref(const void* src, float* y, i64 n, const GroupParams* p) {
  code4_to_float<bnb::Code4::NF4>(src, y, n, p);
}
void fp4_from_float_ref(const float* x, void* dst, i64 n, const GroupParams* p) {
  code4_from_float<bnb::Code4::FP4>(x, dst, n, p);
}
void fp4_to_float_ref(const void* src, float* y, i64 n, const GroupParams* p) {
  code4_to_float<bnb::Code4::FP4>(src, y, n, p);
}

}  // namespace lowbit::formats
