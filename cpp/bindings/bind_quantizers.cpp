// Quantizers: NumPy in, canonical packed arrays out. GIL released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "array_utils.hpp"
#include "lowbit/gptq.hpp"
#include "lowbit/hessian.hpp"
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

  m.def(
      "gptq_quantize",
      [](const py::handle& W_o, const py::handle& H_o, int bits, i64 group_size, bool sym, bool desc_act,
         bool static_groups, double damp_percent, double damp_auto_increment, i64 block_size, bool mse,
         bool compute_objective, bool act_group_aware) {
        const MatrixArg W = matrix_arg(W_o, "W");
        py::array Ha = as_array(H_o, "H");
        if (Ha.ndim() != 2) throw InvalidArgument(str_cat("H must be a 2-D (in_features, in_features) array, got ", describe(Ha)));
        if (Ha.dtype().kind() != 'f')
          throw TypeMismatch(str_cat("H must be a float32 or float64 array, got ", describe(Ha)));
        auto H = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(Ha);
        GptqParams p;
        p.bits = bits;
        p.group_size = group_size;
        p.sym = sym;
        p.desc_act = desc_act;
        p.static_groups = static_groups;
        p.act_group_aware = act_group_aware;
        p.damp_percent = damp_percent;
        p.damp_auto_increment = damp_auto_increment;
        p.block_size = block_size;
        p.mse.enabled = mse;
        p.compute_objective = compute_objective;
        const GroupedIntShape s = gptq_output_shape(W.view.rows, W.view.cols, p);
        py::array_t<std::uint8_t> qweight({s.rows, s.row_bytes()});
        py::array_t<float> scales({s.rows, s.n_groups()});
        py::array_t<std::uint8_t> zeros({s.rows, s.n_groups()});
        py::array_t<std::int32_t> g_idx(s.cols);
        GroupedIntMutView out{s, qweight.mutable_data(), scales.mutable_data(), zeros.mutable_data()};
        std::int32_t* gi = g_idx.mutable_data();
        const float* h = H.data();
        const i64 hr = H.shape(0), hc = H.shape(1);
        GptqStats st;
        {
          py::gil_scoped_release release;
          st = gptq_quantize(W.view, h, hr, hc, p, out, gi);
        }
        py::dict d;
        d["damp_percent_used"] = st.damp_percent_used;
        d["damp_retries"] = st.damp_retries;
        d["dead_columns"] = st.dead_columns;
        d["objective"] = compute_objective ? py::object(py::float_(st.objective)) : py::object(py::none());
        d["objective_rtn"] = compute_objective ? py::object(py::float_(st.objective_rtn)) : py::object(py::none());
        d["obs_loss"] = st.obs_loss;
        d["seconds_factor"] = st.seconds_factor;
        d["seconds_sweep"] = st.seconds_sweep;
        d["seconds_objective"] = st.seconds_objective;
        d["seconds_core"] = st.seconds;
        return py::make_tuple(qweight, scales, zeros, g_idx, s.group_size, d);
      },
      py::arg("W"), py::arg("H"), py::arg("bits") = 4, py::arg("group_size") = 128, py::arg("sym") = true,
      py::arg("desc_act") = false, py::arg("static_groups") = false, py::arg("damp_percent") = 0.01,
      py::arg("damp_auto_increment") = 0.01, py::arg("block_size") = 128, py::arg("mse") = false,
      py::arg("compute_objective") = true, py::arg("act_group_aware") = false,
      R"doc(GPTQ on one weight matrix.

W: float [out, in] (any dtype/strides); H: float32/float64 [in, in] symmetric (lower triangle read).
Returns (qweight uint8 [out, ceil(in*bits/8)], scales float32 [out, G], zeros uint8 [out, G],
g_idx int32 [in], effective group_size, stats dict).)doc");

  py::class_<HessianAccumulator>(m, "HessianAccumulator",
                                 "Running H = (2/N) sum x x^T, mean x^2 and mean |x| per input column.")
      .def(py::init([](i64 in_features, const std::string& dtype) {
             if (dtype != "float32" && dtype != "float64")
               throw InvalidArgument(str_cat("dtype must be 'float32' or 'float64', got '", dtype, "'"));
             return new HessianAccumulator(in_features, dtype == "float32" ? HessianAccumulator::Precision::F32
                                                                           : HessianAccumulator::Precision::F64);
           }),
           py::arg("in_features"), py::arg("dtype") = "float32")
      .def(
          "add",
          [](HessianAccumulator& self, const py::handle& X_o, i64 n_samples) {
            const MatrixArg X = matrix_arg(X_o, "X");
            py::gil_scoped_release release;
            self.add(X.view, n_samples);
          },
          py::arg("X"), py::arg("n_samples"), "Add a 2-D batch X [tokens, in_features] holding n_samples sequences.")
      .def("reset", &HessianAccumulator::reset)
      .def_property_readonly("in_features", &HessianAccumulator::in_features)
      .def_property_readonly("n_samples", &HessianAccumulator::n_samples)
      .def_property_readonly("n_tokens", &HessianAccumulator::n_tokens)
      .def_property_readonly("dtype",
                             [](const HessianAccumulator& a) {
                               return a.precision() == HessianAccumulator::Precision::F32 ? "float32" : "float64";
                             })
      .def("hessian",
           [](const HessianAccumulator& a) -> py::array {
             const i64 n = a.in_features();
             if (a.precision() == HessianAccumulator::Precision::F32) {
               py::array_t<float> out({n, n});
               a.hessian(out.mutable_data());
               return std::move(out);
             }
             py::array_t<double> out({n, n});
             a.hessian(out.mutable_data());
             return std::move(out);
           })
      .def("act_mean_sq",
           [](const HessianAccumulator& a) {
             py::array_t<double> out(a.in_features());
             a.act_mean_sq(out.mutable_data());
             return out;
           })
      .def("act_mean_abs", [](const HessianAccumulator& a) {
        py::array_t<double> out(a.in_features());
        a.act_mean_abs(out.mutable_data());
        return out;
      });
}
