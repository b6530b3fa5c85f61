// HQQ: the solver and the dequantization of its float-zero layout. GIL released around both.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "array_utils.hpp"
#include "lowbit/hqq.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {
// hqq's shapes for the per-group metadata: [G, 1] for axis 1, [1, G] for axis 0.
std::vector<py::ssize_t> meta_shape(const HqqShape& s) {
  return s.axis == 1 ? std::vector<py::ssize_t>{s.n_groups(), 1} : std::vector<py::ssize_t>{1, s.n_groups()};
}
}  // namespace

void register_hqq(py::module_& m) {
  m.def(
      "hqq_quantize",
      [](const py::handle& W_o, int nbits, i64 group_size, int axis, bool optimize, bool round_zero,
         double lp_norm, double beta, int iters, bool early_stop) {
        const MatrixArg W = matrix_arg(W_o, "W");
        HqqParams p;
        p.nbits = nbits;
        p.group_size = group_size;
        p.axis = axis;
        p.optimize = optimize;
        p.round_zero = round_zero;
        p.lp_norm = lp_norm;
        p.beta = beta;
        p.iters = iters;
        p.early_stop = early_stop;
        const HqqShape s = hqq_shape(W.view.rows, W.view.cols, p);
        py::array_t<std::uint8_t> qweight({s.rows, s.row_bytes()});
        py::array_t<float> scale(meta_shape(s)), zero(meta_shape(s));
        std::uint8_t* qw = qweight.mutable_data();
        float* sc = scale.mutable_data();
        float* ze = zero.mutable_data();
        HqqStats st;
        {
          py::gil_scoped_release release;
          st = hqq_quantize(W.view, p, qw, sc, ze);
        }
        py::dict d;
        d["steps"] = st.steps;
        d["errors"] = st.errors;
        return py::make_tuple(qweight, scale, zero, d);
      },
      py::arg("W"), py::arg("nbits") = 4, py::arg("group_size") = 64, py::arg("axis") = 1, py::arg("optimize") = true,
      py::arg("round_zero") = false, py::arg("lp_norm") = 0.7, py::arg("beta") = 10.0, py::arg("iters") = 20,
      py::arg("early_stop") = true,
      R"doc(HQQ quantization of one weight matrix (hqq's Quantizer.quantize + its default solver, float32).

W: float32/float16/bfloat16/float64 [rows, cols], any strides; group_size must divide rows*cols.
axis 1: groups of group_size consecutive elements of the flattened W; axis 0: groups strided by
G = rows*cols/group_size. Returns (qweight uint8 [rows, ceil(cols*nbits/8)] LSB-first codes,
scale float32, zero float32 (each [G, 1] for axis 1, [1, G] for axis 0), stats {steps, errors}).
W_hat = (code - zero) * scale. ValueError for NaN/inf weights or a group_size that does not divide.)doc");

  m.def(
      "hqq_dequantize",
      [](const py::handle& qweight_o, const py::handle& scale_o, const py::handle& zero_o, int nbits, i64 rows,
         i64 cols, i64 group_size, int axis) {
        HqqParams p;
        p.nbits = nbits;
        p.group_size = group_size;
        p.axis = axis;
        const HqqShape s = hqq_shape(rows, cols, p);
        auto qw = exact_array<std::uint8_t>(qweight_o, "qweight", {rows, s.row_bytes()});
        const std::vector<py::ssize_t> ms = meta_shape(s);
        auto sc = exact_array<float>(scale_o, "scale", ms);
        auto ze = exact_array<float>(zero_o, "zero", ms);
        py::array_t<float> out({rows, cols});
        float* y = out.mutable_data();
        const std::uint8_t* q = qw.data();
        const float* a = sc.data();
        const float* b = ze.data();
        {
          py::gil_scoped_release release;
          hqq_dequantize(s, q, a, b, y);
        }
        return out;
      },
      py::arg("qweight"), py::arg("scale"), py::arg("zero"), py::arg("nbits"), py::arg("rows"), py::arg("cols"),
      py::arg("group_size"), py::arg("axis"),
      "HQQ layout -> float32 [rows, cols]: (code - zero[g]) * scale[g], g the group of each element.");
}
