// Quantized matmul of GGUF block weights (lowbit/ggml_qmatmul.hpp): the prepared weights,
// the product, and the activation quantizer (for tests against llama.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "array_utils.hpp"
#include "matmul_args.hpp"
#include "lowbit/ggml_qmatmul.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

QType ggml_format(const std::string& name) {
  const QType t = traits_by_name(name.c_str()).type;
  if (!ggml_matmul_supported(t)) ggml_vec_dot_type(t);  // Unsupported naming the kernels
  return t;
}

}  // namespace

void register_ggml_qmatmul(py::module_& m) {
  py::class_<GgmlPackedWeights, std::shared_ptr<GgmlPackedWeights>>(m, "GgmlPackedWeights", R"doc(
GGUF block weights prepared once for ggml_qmatmul: ggml's native blocks, rows contiguous
(q4_0 iq4_nl q4_K q8_0 q6_K on x86: interleaved in groups of 8 rows for the SIMD kernels,
lowbit/ggml_repack.hpp).
Immutable; made by prepare_ggml.)doc")
      .def_property_readonly("format", [](const GgmlPackedWeights& w) { return std::string(traits(w.format).name); })
      .def_property_readonly("act_type", [](const GgmlPackedWeights& w) { return std::string(traits(w.act_type).name); },
                             "The vec_dot_type activations are quantized to (q8_0, q8_1 or q8_K).")
      .def_property_readonly("rows", [](const GgmlPackedWeights& w) { return w.rows; })
      .def_property_readonly("cols", [](const GgmlPackedWeights& w) { return w.cols; })
      .def_property_readonly("nbytes", [](const GgmlPackedWeights& w) { return w.nbytes(); },
                             "Bytes one product streams (the blocks).")
      .def("__repr__", [](const GgmlPackedWeights& w) {
        return str_cat("GgmlPackedWeights(", traits(w.format).name, " x ", traits(w.act_type).name, ", shape=(",
                       w.rows, ", ", w.cols, "), nbytes=", w.nbytes(), ")");
      });

  m.def(
      "prepare_ggml",
      [](const std::string& format, const py::handle& qweight_o, i64 rows, i64 cols) {
        const QType t = ggml_format(format);
        LOWBIT_CHECK(rows > 0 && cols > 0, "rows and cols must be positive, got ", rows, " x ", cols);
        LOWBIT_CHECK(cols % traits(t).block_size == 0, "cols must be a multiple of ", format, "'s block size ",
                     traits(t).block_size, ", got ", cols);
        auto qw = exact_array<std::uint8_t>(qweight_o, "qweight", {rows, row_size(t, cols)});
        const std::uint8_t* p = qw.data();
        py::gil_scoped_release release;
        return prepare_ggml(t, p, rows, cols);
      },
      py::arg("format"), py::arg("qweight"), py::arg("rows"), py::arg("cols"),
      "GGUF blocks uint8 [rows, row_size(format, cols)] -> GgmlPackedWeights for ggml_qmatmul. Formats: q4_0 "
      "q4_1 q5_0 q5_1 q8_0 iq4_nl q2_K q3_K q4_K q5_K q6_K. Done once per weight.");

  m.def(
      "ggml_qmatmul",
      [](const py::handle& x_o, const std::shared_ptr<GgmlPackedWeights>& w, const std::string& act,
         const py::object& isa_o) {
        if (!w) throw TypeMismatch("w must be a GgmlPackedWeights, got None");
        const QActMode mode = parse_ggml_act(act, w->format);
        const GgmlDotKernels& k = isa_o.is_none() ? ggml_dot_kernels() : ggml_dot_kernels(parse_isa(isa_o.cast<std::string>()));
        const ActivationArg X = activation_arg(x_o, w->cols);
        py::array_t<float> y({X.rows, w->rows});
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          ggml_qmatmul(X.data, X.dtype, X.rows, X.ld, *w, mode, yp, k);
        }
        return y;
      },
      py::arg("x"), py::arg("w"), py::arg("act") = "int8", py::arg("isa") = py::none(),
      R"doc(y = x @ W_hat.T for GGUF block weights, as llama.cpp's CPU mul_mat computes it.

x: float32 / float16 / bfloat16 (float64 converted) [M, in_features]; w: GgmlPackedWeights.
act: 'int8' (each row of x quantized to the weight type's vec_dot_type q8_0 / q8_1 / q8_K as
ggml-cpu does, then ggml's vec_dot per output; error vs the float product <= sum_k |W_hat[r,k]|
* (d(k)/2 + 2^-11 |x_k|)), or 'float32' (dequantized tiles x float32 GEMM). isa: None (active)
or 'scalar' / 'avx2' / 'avx512' (tests). Returns float32 [M, out_features]; bit-identical for
any thread count; a row of x with a NaN/inf gives a NaN row.)doc");

  m.def(
      "ggml_quantize_act",
      [](const std::string& act_type, const py::handle& x_o, const py::object& isa_o) {
        const QType at = traits_by_name(act_type.c_str()).type;
        const GgmlDotKernels* k = isa_o.is_none() ? nullptr : &ggml_dot_kernels(parse_isa(isa_o.cast<std::string>()));
        LOWBIT_CHECK(at == QType::Q8_0 || at == QType::Q8_1 || at == QType::Q8_K,
                     "act_type must be 'q8_0', 'q8_1' or 'q8_K', got '", act_type, "'");
        auto x = exact_array<float>(x_o, "x", {-1, -1});
        const i64 M = x.shape(0), K = x.shape(1);
        LOWBIT_CHECK(K % traits(at).block_size == 0, "x.shape[1] must be a multiple of ", traits(at).block_size,
                     ", got ", describe(x));
        const i64 rb = row_size(at, K);
        py::array_t<std::uint8_t> out({M, rb});
        std::uint8_t* o = out.mutable_data();
        const float* xp = x.data();
        {
          py::gil_scoped_release release;
          for (i64 i = 0; i < M; ++i) {
            if (k != nullptr && k->quantize_act != nullptr) k->quantize_act(at, xp + i * K, o + i * rb, K);
            else ggml_quantize_act_row(at, xp + i * K, o + i * rb, K);
          }
        }
        return out;
      },
      py::arg("act_type"), py::arg("x"), py::arg("isa") = py::none(),
      "Rows of float32 x [M, K] quantized as ggml-cpu's from_float for act_type (q8_0 / q8_1 / q8_K) does on "
      "x86: uint8 [M, row_size(act_type, K)]. isa: the SIMD quantizer ggml_qmatmul runs for that ISA "
      "(the same bytes; finite x only, as ggml_qmatmul gives it), default the scalar definition.");

  m.def(
      "ggml_vec_dot_type", [](const std::string& format) { return std::string(traits(ggml_vec_dot_type(ggml_format(format))).name); },
      py::arg("format"), "The activation type llama.cpp pairs with GGUF weight format (q8_0, q8_1 or q8_K).");
}
