// Deterministic data for the C++ tests (closed-form, as ggml's tests do; no RNG state).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "lowbit/common.hpp"

namespace lowbit::test_data {

inline std::vector<float> cos_data(i64 n, float offset = 0.0f, float amp = 2.0f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = 0.1f + amp * std::cos(static_cast<float>(i) + offset);
  return v;
}

// SplitMix64: a tiny counter-based generator for reproducible pseudo-random floats.
inline std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline std::vector<float> uniform_data(i64 n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix(seed * 0x100000001b3ull + static_cast<std::uint64_t>(i)) >> 11) /
                     9007199254740992.0;
    v[static_cast<std::size_t>(i)] = static_cast<float>(lo + (hi - lo) * u);
  }
  return v;
}

// Sizes that hit SIMD tails (ggml's sweep).
inline const std::vector<i64>& tail_sizes() {
  static const std::vector<i64> s = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 255, 1023};
  return s;
}

}  // namespace lowbit::test_data
