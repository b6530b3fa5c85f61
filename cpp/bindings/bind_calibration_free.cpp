// Calibration-free quantizers over their own layouts: FP8 (scaled E4M3/E5M2), int8 per output
// channel (torchao / EETQ conventions) and torchao's float-zero-point int4 ("tinygemm").
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "array_utils.hpp"
#include "lowbit/fp8.hpp"
#include "lowbit/int8_channel.hpp"
#include "lowbit/tinygemm.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

Fp8Kind fp8_kind_arg(const std::string& fmt) {
  if (fmt == "e4m3") return Fp8Kind::E4M3;
  if (fmt == "e5m2") return Fp8Kind::E5M2;
  throw InvalidArgument(str_cat("fmt must be 'e4m3' or 'e5m2', got '", fmt, "'"));
}

Fp8Params fp8_params_arg(const std::string& fmt, const std::string& strategy, const py::object& block_o) {
  Fp8Params p;
  p.kind = fp8_kind_arg(fmt);
  if (strategy == "tensor") {
    p.strategy = Fp8Strategy::Tensor;
  } else if (strategy == "channel") {
    p.strategy = Fp8Strategy::Channel;
  } else if (strategy == "block") {
    p.strategy = Fp8Strategy::Block;
    if (!py::isinstance<py::sequence>(block_o) || py::len(block_o) != 2)
      throw InvalidArgument(str_cat("block_size must be a pair (rows, cols), got ",
                                    py::str(block_o).cast<std::string>()));
    const py::sequence b = py::reinterpret_borrow<py::sequence>(block_o);
    p.block_rows = b[0].cast<i64>();
    p.block_cols = b[1].cast<i64>();
  } else {
    throw InvalidArgument(str_cat("strategy must be 'tensor', 'channel' or 'block', got '", strategy, "'"));
  }
  return p;
}

template <Fp8Kind K>
py::array_t<std::uint8_t> to_fp8_bits(const py::array_t<float, py::array::c_style | py::array::forcecast>& x) {
  py::array_t<std::uint8_t> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float* src = x.data();
  std::uint8_t* dst = out.mutable_data();
  const py::ssize_t n = x.size();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i) dst[i] = fp32_to_fp8<K>(src[i]);
  }
  return out;
}

template <Fp8Kind K>
py::array_t<float> from_fp8_bits(const py::handle& obj) {
  py::array a = as_array(obj, "bits");
  if (a.itemsize() != 1 || (a.dtype().kind() != 'u' && a.dtype().kind() != 'V' && a.dtype().kind() != 'f'))
    throw TypeMismatch(str_cat("bits must be a uint8 array (or a 1-byte float8 array), got ", describe(a)));
  auto b = py::array_t<std::uint8_t, py::array::c_style>::ensure(a.view("uint8"));
  py::array_t<float> out(std::vector<py::ssize_t>(b.shape(), b.shape() + b.ndim()));
  const std::uint8_t* src = b.data();
  float* dst = out.mutable_data();
  const py::ssize_t n = b.size();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i) dst[i] = fp8_to_fp32<K>(src[i]);
  }
  return out;
}

}  // namespace

void register_calibration_free(py::module_& m) {
  m.def(
      "fp8_bits",
      [](const py::array_t<float, py::array::c_style | py::array::forcecast>& x, const std::string& fmt) {
        return fp8_kind_arg(fmt) == Fp8Kind::E4M3 ? to_fp8_bits<Fp8Kind::E4M3>(x) : to_fp8_bits<Fp8Kind::E5M2>(x);
      },
      py::arg("x"), py::arg("fmt") = "e4m3",
      "float32 array -> uint8 FP8 bytes (fmt 'e4m3' or 'e5m2'): round to nearest even, saturating "
      "(|x| beyond the largest finite value and +-inf become +-max; NaN stays NaN).");
  m.def(
      "from_fp8_bits",
      [](const py::handle& bits, const std::string& fmt) {
        return fp8_kind_arg(fmt) == Fp8Kind::E4M3 ? from_fp8_bits<Fp8Kind::E4M3>(bits)
                                                   : from_fp8_bits<Fp8Kind::E5M2>(bits);
      },
      py::arg("bits"), py::arg("fmt") = "e4m3", "uint8 FP8 bytes -> float32 (exact).");

  m.def(
      "fp8_quantize",
      [](const py::handle& W_o, const std::string& fmt, const std::string& strategy, const py::object& block_o) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const Fp8Params p = fp8_params_arg(fmt, strategy, block_o);
        const Fp8Shape s = fp8_output_shape(W.view.rows, W.view.cols, p);
        py::array_t<std::uint8_t> codes({s.rows, s.cols});
        py::array_t<float> scales({s.scale_rows(), s.scale_cols()});
        std::uint8_t* c = codes.mutable_data();
        float* sc = scales.mutable_data();
        {
          py::gil_scoped_release release;
          fp8_quantize(W.view, p, c, sc);
        }
        return py::make_tuple(codes, scales, py::make_tuple(s.block_rows, s.block_cols));
      },
      py::arg("W"), py::arg("fmt") = "e4m3", py::arg("strategy") = "channel",
      py::arg("block_size") = py::make_tuple(128, 128),
      R"doc(Scaled FP8 quantization: scale = amax(tile) / max_value, codes = fp8(W / scale), saturating.

W: float32/float16/bfloat16/float64 [out, in], any strides. fmt: 'e4m3' (max 448) or 'e5m2' (max 57344).
strategy: 'tensor' (one scale), 'channel' (one per output row) or 'block' (block_size = (rows, cols)
tiles; the last tiles may be partial). Returns (codes uint8 [out, in], scales float32
[ceil(out/br), ceil(in/bc)], (br, bc) the effective tile). ValueError for NaN/inf weights.)doc");
  m.def(
      "fp8_dequantize",
      [](const py::handle& codes_o, const py::handle& scales_o, const std::string& fmt, i64 block_rows,
         i64 block_cols) {
        auto codes = exact_array<std::uint8_t>(codes_o, "codes", {-1, -1});
        Fp8Shape s;
        s.rows = codes.shape(0);
        s.cols = codes.shape(1);
        LOWBIT_CHECK(s.rows > 0 && s.cols > 0, "codes must be non-empty, got ", describe(codes));
        LOWBIT_CHECK(block_rows >= 1 && block_cols >= 1, "block_rows and block_cols must be >= 1, got ", block_rows,
                     ", ", block_cols);
        s.block_rows = block_rows;
        s.block_cols = block_cols;
        auto scales = exact_array<float>(scales_o, "scales", {s.scale_rows(), s.scale_cols()});
        const Fp8Kind kind = fp8_kind_arg(fmt);
        py::array_t<float> out({s.rows, s.cols});
        float* y = out.mutable_data();
        {
          py::gil_scoped_release release;
          fp8_dequantize(s, kind, codes.data(), scales.data(), y);
        }
        return out;
      },
      py::arg("codes"), py::arg("scales"), py::arg("fmt"), py::arg("block_rows"), py::arg("block_cols"),
      "W_hat float32 [out, in] = scales[r // block_rows, c // block_cols] * fp8(codes[r, c]).");

  m.def(
      "int8_channel_quantize",
      [](const py::handle& W_o, const std::string& rule) {
        const MatrixArg W = matrix_arg(W_o, "W");
        Int8ChannelRule r;
        if (rule == "torchao")
          r = Int8ChannelRule::Torchao;
        else if (rule == "eetq")
          r = Int8ChannelRule::Eetq;
        else
          throw InvalidArgument(str_cat("rule must be 'torchao' or 'eetq', got '", rule, "'"));
        const GroupedIntShape s = int8_channel_output_shape(W.view.rows, W.view.cols);
        py::array_t<std::uint8_t> qweight({s.rows, s.row_bytes()});
        py::array_t<float> scales({s.rows, i64{1}});
        py::array_t<std::uint8_t> zeros({s.rows, i64{1}});
        GroupedIntMutView out{s, qweight.mutable_data(), scales.mutable_data(), zeros.mutable_data()};
        {
          py::gil_scoped_release release;
          int8_channel_quantize(W.view, r, out);
        }
        return py::make_tuple(qweight, scales, zeros);
      },
      py::arg("W"), py::arg("rule") = "torchao",
      R"doc(Symmetric int8 per output channel in the grouped int8 layout (codes q + 128, zeros 128).

rule 'torchao': scale = max(amax/127.5, eps), q = clamp(rne(w * (1/scale)), -128, 127);
rule 'eetq': scale = amax/128, q = clamp(round_half_away(w / scale), -128, 127).
Returns (qweight uint8 [out, in], scales float32 [out, 1], zeros uint8 [out, 1]).)doc");

  m.def(
      "tinygemm_quantize",
      [](const py::handle& W_o, i64 group_size) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const TinygemmShape s = tinygemm_output_shape(W.view.rows, W.view.cols, group_size);
        py::array_t<std::uint8_t> qweight({s.rows, s.row_bytes()});
        py::array_t<std::uint16_t> scales({s.rows, s.n_groups()});
        py::array_t<std::uint16_t> zeros({s.rows, s.n_groups()});
        std::uint8_t* q = qweight.mutable_data();
        std::uint16_t* sc = scales.mutable_data();
        std::uint16_t* zp = zeros.mutable_data();
        {
          py::gil_scoped_release release;
          tinygemm_quantize(W.view, group_size, q, sc, zp);
        }
        return py::make_tuple(qweight, scales, zeros);
      },
      py::arg("W"), py::arg("group_size") = 128,
      R"doc(torchao int4 weight-only (float zero point) quantization of W [out, in] (in % group_size == 0).

Returns (qweight uint8 [out, ceil(in/2)] 4-bit codes LSB-first, scales_bf16 uint16 [out, G],
zeros_bf16 uint16 [out, G]) with W_hat = (q - 8) * scale + zero.)doc");
  m.def(
      "tinygemm_dequantize",
      [](const py::handle& q_o, const py::handle& scales_o, const py::handle& zeros_o, i64 rows, i64 cols,
         i64 group_size) {
        const TinygemmShape s = tinygemm_output_shape(rows, cols, group_size);
        auto q = exact_array<std::uint8_t>(q_o, "qweight", {s.rows, s.row_bytes()});
        auto sc = exact_array<std::uint16_t>(scales_o, "scales_bf16", {s.rows, s.n_groups()});
        auto zp = exact_array<std::uint16_t>(zeros_o, "zeros_bf16", {s.rows, s.n_groups()});
        py::array_t<float> out({s.rows, s.cols});
        float* y = out.mutable_data();
        {
          py::gil_scoped_release release;
          tinygemm_dequantize(s, q.data(), sc.data(), zp.data(), y);
        }
        return out;
      },
      py::arg("qweight"), py::arg("scales_bf16"), py::arg("zeros_bf16"), py::arg("rows"), py::arg("cols"),
      py::arg("group_size"), "W_hat float32 [rows, cols] = (q - 8) * scale + zero of torchao's int4 format.");
}
