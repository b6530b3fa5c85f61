// Symmetric per-output-channel int8 (torchao / EETQ conventions): see int8_channel.hpp.
#include "lowbit/int8_channel.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "lowbit/parallel.hpp"

namespace lowbit {

GroupedIntShape int8_channel_output_shape(i64 rows, i64 cols) { return make_grouped_shape(8, rows, cols, -1); }

void int8_channel_quantize(const AnyMatrixView& W, Int8ChannelRule rule, const GroupedIntMutView& out) {
  const GroupedIntShape s = int8_channel_output_shape(W.rows, W.cols);
  LOWBIT_CHECK(out.shape.rows == s.rows && out.shape.cols == s.cols && out.shape.bits == 8 &&
                   out.shape.group_size == s.cols && !out.shape.per_tensor,
               "output buffers do not match the int8 per-channel shape");
  std::vector<i64> bad_col(static_cast<std::size_t>(s.rows), -1);
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> row(static_cast<std::size_t>(s.cols));
        W.load_row(r, row.data());
        float amax = 0.0f;
        for (i64 c = 0; c < s.cols; ++c) {
          const float v = row[static_cast<std::size_t>(c)];
          if (!std::isfinite(v)) {
            bad_col[static_cast<std::size_t>(r)] = c;
            return;
          }
          amax = std::max(amax, std::fabs(v));
        }
        std::uint8_t* codes = out.qweight + r * s.row_bytes();
        out.zeros[r] = 128;
        if (rule == Int8ChannelRule::Torchao) {
          const float scale = std::max(amax / 127.5f, FLT_EPSILON);
          const float inv = 1.0f / scale;
          out.scales[r] = scale;
          for (i64 c = 0; c < s.cols; ++c) {
            const float q = std::nearbyint(row[static_cast<std::size_t>(c)] * inv);  // half to even
            codes[c] = static_cast<std::uint8_t>(std::clamp(q, -128.0f, 127.0f) + 128.0f);
          }
        } else {
          const float scale = amax * (1.0f / 128.0f);
          out.scales[r] = scale;
          for (i64 c = 0; c < s.cols; ++c) {
            const float q = scale > 0.0f ? std::round(row[static_cast<std::size_t>(c)] / scale) : 0.0f;  // half away
            codes[c] = static_cast<std::uint8_t>(std::clamp(q, -128.0f, 127.0f) + 128.0f);
          }
        }
      },
      min_rows_per_thread(s.cols));
  check_non_finite_marks(W, bad_col);
}

}  // namespace lowbit
