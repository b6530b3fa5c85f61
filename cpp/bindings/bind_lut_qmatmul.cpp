// Table-lookup quantized matmul (lowbit/lut_qmatmul.hpp): the prepared-weight object and the
// product, for NF4/FP4, HQQ, tinygemm int4 and FP8 weights.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <string>

#include "array_utils.hpp"
#include "matmul_args.hpp"
#include "lowbit/lut_qmatmul.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

void register_lut_qmatmul(py::module_& m) {
  py::class_<LutWeights, std::shared_ptr<LutWeights>>(m, "LutWeights", R"doc(
Weights of the form table[code] * scale[g] + offset[g] repacked once for lut_qmatmul (see
lowbit/lut_qmatmul.hpp): 32-column blocks, nibble codes for 16-entry tables, bytes for 256.)doc")
      .def_property_readonly("rows", [](const LutWeights& w) { return w.rows; })
      .def_property_readonly("cols", [](const LutWeights& w) { return w.cols; })
      .def_property_readonly("n_groups", [](const LutWeights& w) { return w.n_groups; })
      .def_property_readonly("table_size", [](const LutWeights& w) { return w.table_size; })
      .def_property_readonly("has_offset", [](const LutWeights& w) { return w.has_offset(); })
      .def_property_readonly(
          "decode",
          [](const LutWeights& w) {
            switch (w.decode) {
              case LutDecode::Int: return "int";
              case LutDecode::E4M3: return "e4m3";
              case LutDecode::E5M2: return "e5m2";
              case LutDecode::Table: break;
            }
            return "table";
          },
          "How SIMD kernels decode a code: 'table' (lookup), 'int' (table[i] == i), 'e4m3' / 'e5m2' (bit arithmetic).")
      .def_property_readonly("reordered", [](const LutWeights& w) { return !w.col_of.empty(); },
                             "Whether groups are padded to 32-column blocks (group size not a multiple of 32).")
      .def_property_readonly("nbytes", [](const LutWeights& w) { return w.nbytes(); },
                             "Bytes one product streams: codes + scales + offsets.")
      .def("__repr__", [](const LutWeights& w) {
        return str_cat("LutWeights(table=", w.table_size, ", shape=(", w.rows, ", ", w.cols, "), groups=", w.n_groups,
                       ", offset=", w.has_offset() ? "True" : "False", ", nbytes=", w.nbytes(), ")");
      });

  m.def(
      "prepare_lut",
      [](const py::handle& codes_o, const py::handle& table_o, const py::handle& scale_o, const py::object& offset_o,
         i64 group_size) {
        auto codes = exact_array<std::uint8_t>(codes_o, "codes", {-1, -1});
        const i64 rows = codes.shape(0), cols = codes.shape(1);
        auto table = exact_array<float>(table_o, "table", {-1});
        const i64 ts = table.shape(0);
        if (ts != 16 && ts != 256)
          throw InvalidArgument(str_cat("table must have 16 or 256 entries, got ", describe(table)));
        if (group_size <= 0 || group_size > cols)
          throw InvalidArgument(str_cat("group_size must be in 1..", cols, " (in_features), got ", group_size));
        const i64 G = (cols + group_size - 1) / group_size;
        auto scale = exact_array<float>(scale_o, "scale", {rows, G});
        py::array_t<float, py::array::c_style> offset;
        if (!offset_o.is_none()) offset = exact_array<float>(offset_o, "offset", {rows, G});
        const float* op = offset_o.is_none() ? nullptr : offset.data();
        py::gil_scoped_release release;
        return prepare_lut(codes.data(), rows, cols, table.data(), static_cast<int>(ts), scale.data(), op, group_size);
      },
      py::arg("codes"), py::arg("table"), py::arg("scale"), py::arg("offset"), py::arg("group_size"),
      R"doc(Repack W_hat[r, c] = table[codes[r, c]] * scale[r, c // group_size] (+ offset[r, c // group_size])
into a LutWeights for lut_qmatmul. codes: uint8 [out, in] (one code per byte); table: float32
[16] or [256]; scale, offset: float32 [out, ceil(in / group_size)] (offset None: no offset).)doc");

  m.def(
      "lut_dequantize",
      [](const std::shared_ptr<LutWeights>& w, const py::object& isa_o) {
        if (!w) throw TypeMismatch("w must be a LutWeights, got None");
        const LutKernels& k = isa_o.is_none() ? lut_kernels() : lut_kernels(parse_isa(isa_o.cast<std::string>()));
        py::array_t<float> out({w->rows, w->padded_cols()});
        float* op = out.mutable_data();
        {
          py::gil_scoped_release release;
          k.dequantize_rows(*w, 0, w->rows, op);
        }
        return out;
      },
      py::arg("w"), py::arg("isa") = py::none(),
      "W_hat of a LutWeights as float32 [out, padded in] in the kernel's padded column order (the prefill "
      "tile; every ISA computes it bit-identically: table value * scale, then + offset).");

  m.def(
      "lut_qmatmul",
      [](const py::handle& x_o, const std::shared_ptr<LutWeights>& w, const std::string& act,
         const py::object& isa_o) {
        if (!w) throw TypeMismatch("w must be a LutWeights, got None");
        check_lut_act(act);
        const LutKernels& k = isa_o.is_none() ? lut_kernels() : lut_kernels(parse_isa(isa_o.cast<std::string>()));
        const ActivationArg X = activation_arg(x_o, w->cols);
        const i64 M = X.rows;
        const ActDType xt = X.dtype;
        py::array_t<float> y({M, w->rows});
        float* yp = y.mutable_data();
        const void* xp = X.data;
        const i64 ldx = X.ld;
        {
          py::gil_scoped_release release;
          lut_qmatmul(xp, xt, M, ldx, *w, yp, k);
        }
        return y;
      },
      py::arg("x"), py::arg("w"), py::arg("act") = "float32", py::arg("isa") = py::none(),
      R"doc(y = x @ W_hat.T for table-lookup weights (LutWeights), float activations throughout.

x: float32 / float16 / bfloat16 (float64 is converted) [M, in_features]. act: 'float32' or
'int8' -- both run the float path (float32 FMA accumulation; table formats have no int8
activation path: the decode kernel is bound by the weight bytes, not the arithmetic);
'int8_token' raises NotImplementedError. isa: None (active) or 'scalar' / 'avx2' (tests).
Returns float32 [M, out_features]; |error| <= gamma(Kp + 4) * sum_k (|table*scale| + |offset|) |x_k|.
Bit-identical for any thread count.)doc");
}
