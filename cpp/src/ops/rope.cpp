// Rotary position embedding in place, with Hugging Face's float32 angles.
#include <cmath>
#include <vector>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

void rope_inplace(float* x, i64 T, i64 H, i64 head_dim, const std::int64_t* positions, const float* inv_freq,
                  bool interleaved, float attention_scaling) {
  LOWBIT_CHECK(T >= 0 && H >= 1, "rope: x must be [T, H, head_dim] with H >= 1, got T=", T, " H=", H);
  LOWBIT_CHECK(head_dim >= 2 && head_dim % 2 == 0, "rope: head_dim must be even and >= 2, got ", head_dim);
  const i64 half = head_dim / 2;
  parallel_for(
      T,
      [&](i64 t) {
        // one cos/sin table per position, shared by its H heads
        std::vector<float> cos_sin(static_cast<std::size_t>(2 * half));
        float* c = cos_sin.data();
        float* s = c + half;
        const float p = static_cast<float>(positions[t]);  // position_ids.float()
        for (i64 i = 0; i < half; ++i) {
          const float angle = p * inv_freq[i];  // float32 product, as HF's freqs
          c[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_scaling;
          s[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_scaling;
        }
        for (i64 h = 0; h < H; ++h) {
          float* v = x + (t * H + h) * head_dim;
          // interleaved: pair i is (v[2i], v[2i+1]); rotate_half: (v[i], v[i + half])
          const i64 step = interleaved ? 2 : 1, off = interleaved ? 1 : half;
          for (i64 i = 0; i < half; ++i) {
            float* a = v + i * step;
            float* b = a + off;
            const float av = *a, bv = *b;
            *a = av * c[i] - bv * s[i];
            *b = bv * c[i] + av * s[i];
          }
        }
      },
      min_rows_per_thread(H * head_dim));
}

}  // namespace lowbit
