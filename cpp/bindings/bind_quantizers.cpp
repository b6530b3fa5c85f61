// Quantizers: NumPy in, canonical packed arrays out. GIL released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "array_utils.hpp"
#include "lowbit/rtn.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

void register_quantizers(py::module_& m) {
  m.def(
      "rtn_quantize",
      [](const py::handle& W_o, int bits, i64 group_size, bool sym) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const RtnParams p{bits, group_size, sym};
        const GroupedIntShape s = rtn_output_shape(W.view, p);
        py::array_t<std::uint8_t> qweight({s.rows, s.row_bytes()});
        py::array_t<float> scales({s.scale_rows(), s.n_groups()});
        py::array_t<std::uint8_t> zeros({s.scale_rows(), s.n_groups()});
        GroupedIntMutView out{s, qweight.mutable_data(), scales.mutable_data(), zeros.mutable_data()};
        {
          py::gil_scoped_release release;
          rtn_quantize(W.view, p, out);
        }
        return py::make_tuple(qweight, scales, zeros, s.group_size);
      },
      py::arg("W"), py::arg("bits") = 4, py::arg("group_size") = 128, py::arg("sym") = true,
      R"doc(Round-to-nearest quantization onto the min-max grid.

W: float32/float16/bfloat16/float64 [out_features, in_features], any strides (read in place).
group_size: -1 per output channel, 0 per tensor, > 0 groups of input columns (last may be partial).
Returns (qweight uint8 [out, ceil(in*bits/8)], scales float32 [out or 1, n_groups],
zeros uint8 [out or 1, n_groups], effective group_size). ValueError for NaN/inf weights.)doc");
}
