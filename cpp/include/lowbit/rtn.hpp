// Round-to-nearest (RTN) quantization onto the min-max grid: the calibration-free baseline.
#pragma once

#include "lowbit/grouped_int.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

struct RtnParams {
  int bits = 4;          // 2..8
  i64 group_size = 128;  // -1: per output channel, 0: per tensor, > 0: groups of columns
  bool sym = true;
};

// Shape of the result rtn_quantize writes for W with these params (validates params).
GroupedIntShape rtn_output_shape(const AnyMatrixView& W, const RtnParams& p);

// Quantizes W [out, in] into `out` (buffers sized by rtn_output_shape). Throws
// InvalidArgument for a non-finite weight (naming its row and column). Parallel over rows;
// output is bit-identical for any thread count.
void rtn_quantize(const AnyMatrixView& W, const RtnParams& p, const GroupedIntMutView& out);

}  // namespace lowbit
