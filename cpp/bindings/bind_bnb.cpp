// bitsandbytes formats: NF4/FP4 blockwise codes, 8-bit dynamic blockwise codes (double
// quantization) and LLM.int8(). NumPy in, NumPy out; GIL released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "array_utils.hpp"
#include "lowbit/bnb.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

bnb::Code4 code4_arg(const std::string& quant_type) {
  if (quant_type == "nf4") return bnb::Code4::NF4;
  if (quant_type == "fp4") return bnb::Code4::FP4;
  throw InvalidArgument(str_cat("quant_type must be 'nf4' or 'fp4', got '", quant_type, "'"));
}

// Any float array -> C-contiguous float32 copy or view (float16/float64 converted exactly or
// rounded as NumPy does); TypeError for non-float dtypes.
py::array_t<float, py::array::c_style> float_array(const py::handle& obj, const char* name) {
  py::array a = as_array(obj, name);
  if (a.dtype().kind() != 'f')
    throw TypeMismatch(str_cat(name, " must be a float array (float32, float16 or float64), got ", describe(a)));
  return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
}

}  // namespace

void register_bnb(py::module_& m) {
  m.def(
      "bnb_code4", [](const std::string& quant_type) {
        py::array_t<float> out(16);
        const float* c = bnb::code4(code4_arg(quant_type));
        std::copy(c, c + 16, out.mutable_data());
        return out;
      },
      py::arg("quant_type"), "The 16 float32 code values of 'nf4' or 'fp4' (bitsandbytes' table), in index order.");

  m.def(
      "bnb_dynamic_map", [] {
        const auto& d = bnb::dynamic_map();
        py::array_t<float> out(static_cast<py::ssize_t>(d.size()));
        std::copy(d.begin(), d.end(), out.mutable_data());
        return out;
      },
      "bitsandbytes' signed 8-bit dynamic map (create_dynamic_map()): float32 [256], ascending.");

  m.def(
      "bnb_quantize_4bit",
      [](const py::handle& x_o, const std::string& quant_type, i64 blocksize) {
        const bnb::Code4 t = code4_arg(quant_type);
        bnb::check_blocksize4(blocksize);
        auto x = float_array(x_o, "x");
        const i64 n = x.size();
        LOWBIT_CHECK(n > 0, "x must be non-empty, got ", describe(x));
        py::array_t<std::uint8_t> packed((n + 1) / 2);
        py::array_t<float> absmax((n + blocksize - 1) / blocksize);
        const float* xp = x.data();
        std::uint8_t* pp = packed.mutable_data();
        float* ap = absmax.mutable_data();
        {
          py::gil_scoped_release release;
          bnb::quantize4(xp, n, t, blocksize, pp, ap);
        }
        return py::make_tuple(packed, absmax);
      },
      py::arg("x"), py::arg("quant_type") = "nf4", py::arg("blocksize") = 64,
      R"doc(bitsandbytes 4-bit blockwise quantization of x (any shape, flattened row-major).

Returns (packed uint8 [ceil(n/2)], first element of each pair in the high nibble;
absmax float32 [ceil(n/blocksize)]). blocksize: power of two in 32..4096.
ValueError for NaN/inf, an empty x or a bad blocksize.)doc");

  m.def(
      "bnb_dequantize_4bit",
      [](const py::handle& packed_o, const py::handle& absmax_o, i64 n, const std::string& quant_type, i64 blocksize) {
        const bnb::Code4 t = code4_arg(quant_type);
        bnb::check_blocksize4(blocksize);
        LOWBIT_CHECK(n > 0, "n must be > 0, got ", n);
        auto packed = exact_array<std::uint8_t>(packed_o, "packed", {(n + 1) / 2});
        auto absmax = exact_array<float>(absmax_o, "absmax", {(n + blocksize - 1) / blocksize});
        py::array_t<float> y(n);
        const std::uint8_t* pp = packed.data();
        const float* ap = absmax.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          bnb::dequantize4(pp, ap, n, t, blocksize, yp);
        }
        return y;
      },
      py::arg("packed"), py::arg("absmax"), py::arg("n"), py::arg("quant_type") = "nf4", py::arg("blocksize") = 64,
      "Inverse of bnb_quantize_4bit: float32 [n] = code[q] * absmax[block].");

  m.def(
      "bnb_quantize_blockwise",
      [](const py::handle& x_o, const py::handle& code_o, i64 blocksize) {
        LOWBIT_CHECK(blocksize > 0, "blocksize must be > 0, got ", blocksize);
        auto x = float_array(x_o, "x");
        auto code = exact_array<float>(code_o, "code", {256});
        const i64 n = x.size();
        LOWBIT_CHECK(n > 0, "x must be non-empty, got ", describe(x));
        py::array_t<std::uint8_t> q(n);
        py::array_t<float> absmax((n + blocksize - 1) / blocksize);
        const float* xp = x.data();
        const float* cp = code.data();
        std::uint8_t* qp = q.mutable_data();
        float* ap = absmax.mutable_data();
        {
          py::gil_scoped_release release;
          bnb::quantize_blockwise8(xp, n, cp, blocksize, qp, ap);
        }
        return py::make_tuple(q, absmax);
      },
      py::arg("x"), py::arg("code"), py::arg("blocksize") = 256,
      R"doc(bitsandbytes 8-bit blockwise quantization of x (flattened) over code (float32 [256], ascending).

Returns (q uint8 [n], absmax float32 [ceil(n/blocksize)]).)doc");

  m.def(
      "bnb_dequantize_blockwise",
      [](const py::handle& q_o, const py::handle& absmax_o, const py::handle& code_o, i64 blocksize, float offset) {
        LOWBIT_CHECK(blocksize > 0, "blocksize must be > 0, got ", blocksize);
        auto q = exact_array<std::uint8_t>(q_o, "q", {-1});
        const i64 n = q.size();
        auto absmax = exact_array<float>(absmax_o, "absmax", {(n + blocksize - 1) / blocksize});
        auto code = exact_array<float>(code_o, "code", {256});
        py::array_t<float> y(n);
        const std::uint8_t* qp = q.data();
        const float* ap = absmax.data();
        const float* cp = code.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          bnb::dequantize_blockwise8(qp, ap, cp, n, blocksize, offset, yp);
        }
        return y;
      },
      py::arg("q"), py::arg("absmax"), py::arg("code"), py::arg("blocksize") = 256, py::arg("offset") = 0.0f,
      "float32 [n] = code[q] * absmax[block] + offset (the restore of double-quantized absmax).");

  m.def(
      "bnb_double_quantize",
      [](const py::handle& absmax_o, i64 blocksize) {
        LOWBIT_CHECK(blocksize > 0, "blocksize must be > 0, got ", blocksize);
        auto absmax = exact_array<float>(absmax_o, "absmax", {-1});
        const i64 n = absmax.size();
        LOWBIT_CHECK(n > 0, "absmax must be non-empty");
        py::array_t<std::uint8_t> q(n);
        py::array_t<float> absmax2((n + blocksize - 1) / blocksize);
        const float* ap = absmax.data();
        std::uint8_t* qp = q.mutable_data();
        float* a2p = absmax2.mutable_data();
        float offset = 0.0f;
        {
          py::gil_scoped_release release;
          offset = bnb::double_quantize(ap, n, blocksize, qp, a2p);
        }
        return py::make_tuple(q, absmax2, offset);
      },
      py::arg("absmax"), py::arg("blocksize") = 256,
      R"doc(Double quantization of 4-bit absmax values (float32 [n]).

Returns (q uint8 [n], nested absmax float32 [ceil(n/blocksize)], offset = mean(absmax)).
Restore with bnb_dequantize_blockwise(q, nested_absmax, bnb_dynamic_map(), blocksize, offset).)doc");

  m.def(
      "int8_rowwise_quantize",
      [](const py::handle& W_o) {
        auto W = float_array(W_o, "W");
        if (W.ndim() != 2) throw InvalidArgument(str_cat("W must be a 2-D (out_features, in_features) array, got ", describe(W)));
        const i64 rows = W.shape(0), cols = W.shape(1);
        LOWBIT_CHECK(rows > 0 && cols > 0, "W must be non-empty, got ", describe(W));
        py::array_t<std::int8_t> CB({rows, cols});
        py::array_t<float> SCB(rows);
        const float* wp = W.data();
        std::int8_t* cp = CB.mutable_data();
        float* sp = SCB.mutable_data();
        {
          py::gil_scoped_release release;
          bnb::int8_rowwise_quantize(wp, rows, cols, cp, sp);
        }
        return py::make_tuple(CB, SCB);
      },
      py::arg("W"),
      R"doc(LLM.int8() weights: CB int8 [out, in] = round(W * 127 / rowmax) (half to even), SCB float32 [out] = rowmax.

ValueError for NaN/inf or an empty W.)doc");

  m.def(
      "int8_rowwise_dequantize",
      [](const py::handle& CB_o, const py::handle& SCB_o) {
        auto CB = exact_array<std::int8_t>(CB_o, "CB", {-1, -1});
        const i64 rows = CB.shape(0), cols = CB.shape(1);
        auto SCB = exact_array<float>(SCB_o, "SCB", {rows});
        py::array_t<float> W({rows, cols});
        const std::int8_t* cp = CB.data();
        const float* sp = SCB.data();
        float* wp = W.mutable_data();
        {
          py::gil_scoped_release release;
          bnb::int8_rowwise_dequantize(cp, sp, rows, cols, wp);
        }
        return W;
      },
      py::arg("CB"), py::arg("SCB"), "float32 [out, in] = CB * SCB / 127 (bnb's int8_vectorwise_dequant).");

  m.def(
      "int8_linear",
      [](const py::handle& x_o, const py::handle& CB_o, const py::handle& SCB_o, float threshold,
         const py::object& bias_o) {
        auto x = float_array(x_o, "x");
        if (x.ndim() != 2) throw InvalidArgument(str_cat("x must be a 2-D (tokens, in_features) array, got ", describe(x)));
        auto CB = exact_array<std::int8_t>(CB_o, "CB", {-1, x.shape(1)});
        const i64 m_ = x.shape(0), k = x.shape(1), n = CB.shape(0);
        LOWBIT_CHECK(k > 0 && n > 0, "empty weight: CB ", describe(CB));
        auto SCB = exact_array<float>(SCB_o, "SCB", {n});
        py::array_t<float, py::array::c_style> bias;
        const float* bp = nullptr;
        if (!bias_o.is_none()) {
          bias = exact_array<float>(bias_o, "bias", {n});
          bp = bias.data();
        }
        py::array_t<float> y({m_, n});
        const float* xp = x.data();
        const std::int8_t* cp = CB.data();
        const float* sp = SCB.data();
        float* yp = y.mutable_data();
        bnb::Int8LinearStats st;
        {
          py::gil_scoped_release release;
          st = bnb::int8_linear(xp, m_, k, cp, sp, n, threshold, bp, yp);
        }
        return py::make_tuple(y, st.outlier_columns);
      },
      py::arg("x"), py::arg("CB"), py::arg("SCB"), py::arg("threshold") = 6.0f, py::arg("bias") = py::none(),
      R"doc(LLM.int8() product y = x @ W_hat.T (+ bias) with outlier-column decomposition.

x: float [tokens, in]; CB int8 [out, in]; SCB float32 [out]; bias float32 [out] or None.
Input features where any |x| >= threshold run in float16 precision against the float16
dequantized weight columns; the rest as int8 x int8 -> int32 with per-token and per-row absmax
scales. threshold <= 0 disables the decomposition. Returns (y float32 [tokens, out],
number of outlier columns). ValueError for NaN/inf in x.)doc");
}
