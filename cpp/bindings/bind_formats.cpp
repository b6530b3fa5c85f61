// The format table, float16/bfloat16 conversions, code packing and grouped dequantization.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "array_utils.hpp"
#include "lowbit/format_table.hpp"
#include "lowbit/grouped_int.hpp"
#include "lowbit/half.hpp"
#include "lowbit/parallel.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

// Elementwise float32 -> uint16 bits (any shape).
template <std::uint16_t (*Conv)(float)>
py::array_t<std::uint16_t> to_bits(const py::array_t<float, py::array::c_style | py::array::forcecast>& x) {
  py::array_t<std::uint16_t> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float* src = x.data();
  std::uint16_t* dst = out.mutable_data();
  const py::ssize_t n = x.size();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i) dst[i] = Conv(src[i]);
  }
  return out;
}

template <float (*Conv)(std::uint16_t)>
py::array_t<float> from_bits(const py::handle& obj) {
  py::array a = as_array(obj, "bits");
  if (!has_dtype<std::uint16_t>(a) && !(a.dtype().kind() == 'f' && a.itemsize() == 2) &&
      py::str(a.dtype()).cast<std::string>() != "bfloat16")
    throw TypeMismatch(str_cat("bits must be a uint16 array (or a 2-byte float array), got ", describe(a)));
  py::array_t<std::uint16_t, py::array::c_style> b = py::array_t<std::uint16_t, py::array::c_style>::ensure(
      a.view("uint16"));
  py::array_t<float> out(std::vector<py::ssize_t>(b.shape(), b.shape() + b.ndim()));
  const std::uint16_t* src = b.data();
  float* dst = out.mutable_data();
  const py::ssize_t n = b.size();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i) dst[i] = Conv(src[i]);
  }
  return out;
}

GroupedIntShape grouped_shape_arg(int bits, i64 rows, i64 cols, i64 group_size, bool per_tensor) {
  return make_grouped_shape(bits, rows, cols, per_tensor ? 0 : group_size);
}

// The per-group scales/zeros a grouped format's reference row functions need (kept alive
// here); nothing for self-contained formats.
struct RowGroupArgs {
  GroupParams gp;
  py::array_t<float, py::array::c_style> scales;
  py::array_t<std::uint8_t, py::array::c_style> zeros;
  bool used = false;

  RowGroupArgs(const QTypeTraits& t, i64 n, const py::object& scales_o, const py::object& zeros_o, i64 group_size) {
    if (!t.needs_group_params) return;
    LOWBIT_CHECK(group_size > 0, "group_size must be > 0 for ", t.name, ", got ", group_size);
    const i64 G = (n + group_size - 1) / group_size;
    scales = exact_array<float>(scales_o, "scales", {G});
    zeros = exact_array<std::uint8_t>(zeros_o, "zeros", {G});
    gp = GroupParams{scales.data(), zeros.data(), group_size};
    used = true;
  }
  const GroupParams* params() const { return used ? &gp : nullptr; }
};

}  // namespace

void register_formats(py::module_& m) {
  m.def(
      "format_table",
      [] {
        py::list rows;
        for (const QTypeTraits& t : all_traits()) {
          py::dict d;
          d["id"] = static_cast<int>(t.type);
          d["name"] = t.name;
          d["bits"] = t.bits;
          d["block_size"] = t.block_size;
          d["type_size"] = t.type_size;
          d["bits_per_weight"] = t.bits_per_weight();
          d["is_quantized"] = t.is_quantized;
          d["needs_group_params"] = t.needs_group_params;
          d["partial_block_ok"] = t.partial_block_ok;
          d["roundtrip_rel_tol"] = t.roundtrip_rel_tol;
          d["is_gguf_type"] = static_cast<int>(t.type) < kLowbitTypeIdBase;
          d["description"] = t.description;
          rows.append(d);
        }
        return rows;
      },
      "The format table: one dict per format (id, name, block_size, type_size, bits_per_weight, ...).");
  m.def("row_size", [](const std::string& fmt, i64 n) { return row_size(traits_by_name(fmt.c_str()).type, n); },
        py::arg("format"), py::arg("n"), "Bytes of one packed row of n elements in `format`.");

  m.def(
      "quantize_row_ref",
      [](const std::string& fmt, const py::handle& xo, const py::object& scales_o, const py::object& zeros_o,
         i64 group_size) {
        const QTypeTraits& t = traits_by_name(fmt.c_str());
        auto x = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(as_array(xo, "x"));
        LOWBIT_CHECK(x.ndim() == 1 && x.size() > 0, "x must be a non-empty 1-D array, got ", describe(x));
        const i64 n = x.size();
        const RowGroupArgs g(t, n, scales_o, zeros_o, group_size);
        py::array_t<std::uint8_t> out(row_size(t.type, n));
        t.from_float_ref(x.data(), out.mutable_data(), n, g.params());
        return out;
      },
      py::arg("format"), py::arg("x"), py::arg("scales") = py::none(), py::arg("zeros") = py::none(),
      py::arg("group_size") = 0,
      "Reference (scalar) quantization of one row x (float32 [n]) into `format`'s bytes (uint8).");
  m.def(
      "dequantize_row_ref",
      [](const std::string& fmt, const py::handle& data_o, i64 n, const py::object& scales_o,
         const py::object& zeros_o, i64 group_size) {
        const QTypeTraits& t = traits_by_name(fmt.c_str());
        LOWBIT_CHECK(n > 0, "n must be > 0, got ", n);
        auto data = exact_array<std::uint8_t>(data_o, "data", {row_size(t.type, n)});
        const RowGroupArgs g(t, n, scales_o, zeros_o, group_size);
        py::array_t<float> out(n);
        t.to_float_ref(data.data(), out.mutable_data(), n, g.params());
        return out;
      },
      py::arg("format"), py::arg("data"), py::arg("n"), py::arg("scales") = py::none(),
      py::arg("zeros") = py::none(), py::arg("group_size") = 0,
      "Reference dequantization of one row (uint8 bytes) of n elements to float32 [n].");

  m.def(
      "quantize_rows",
      [](const std::string& fmt, const py::handle& w_o, const py::object& qw_o) {
        const QTypeTraits& t = traits_by_name(fmt.c_str());
        LOWBIT_CHECK(!t.needs_group_params, "quantize_rows takes self-contained formats (scales inside the "
                     "blocks); ", t.name, " stores scales beside the codes: use a quantizer (lowbit.quantize)");
        auto w = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(as_array(w_o, "W"));
        LOWBIT_CHECK(w.ndim() == 2 && w.shape(0) > 0 && w.shape(1) > 0,
                     "W must be a non-empty 2-D array (rows, n), got ", describe(w));
        const i64 rows = w.shape(0), n = w.shape(1), rb = row_size(t.type, n);
        py::array_t<float, py::array::c_style> qw;
        GroupParams gp;
        if (!qw_o.is_none()) {
          qw = exact_array<float>(qw_o, "quant_weights", {n});
          gp.quant_weights = qw.data();
        }
        py::array_t<std::uint8_t> out({rows, rb});
        const float* src = w.data();
        std::uint8_t* dst = out.mutable_data();
        const GroupParams* pp = qw_o.is_none() ? nullptr : &gp;
        {
          py::gil_scoped_release release;
          parallel_for(rows, [&](i64 r) { t.from_float_ref(src + r * n, dst + r * rb, n, pp); },
                       min_rows_per_thread(n, 4096));
        }
        return out;
      },
      py::arg("format"), py::arg("W"), py::arg("quant_weights") = py::none(),
      "Quantize float32 rows W [rows, n] into a self-contained format's bytes, uint8 [rows, row_size(n)]. "
      "quant_weights (float32 [n]) is an optional per-column importance (GGUF imatrix).");
  m.def(
      "dequantize_rows",
      [](const std::string& fmt, const py::handle& data_o, i64 n) {
        const QTypeTraits& t = traits_by_name(fmt.c_str());
        LOWBIT_CHECK(!t.needs_group_params, "dequantize_rows takes self-contained formats; ", t.name,
                     " stores scales beside the codes: use dequantize_grouped");
        LOWBIT_CHECK(n > 0, "n must be > 0, got ", n);
        const i64 rb = row_size(t.type, n);
        auto data = exact_array<std::uint8_t>(data_o, "data", {-1, rb});
        const i64 rows = data.shape(0);
        py::array_t<float> out({rows, n});
        const std::uint8_t* src = data.data();
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          parallel_for(rows, [&](i64 r) { t.to_float_ref(src + r * rb, dst + r * n, n, nullptr); },
                       min_rows_per_thread(n, 4096));
        }
        return out;
      },
      py::arg("format"), py::arg("data"), py::arg("n"),
      "Dequantize rows of a self-contained format: uint8 [rows, row_size(n)] -> float32 [rows, n].");

  m.def("fp16_bits", &to_bits<fp32_to_fp16>, py::arg("x"),
        "float32 array -> uint16 IEEE half bits (round to nearest even; same bits as NumPy's astype(float16)).");
  m.def("bf16_bits", &to_bits<fp32_to_bf16>, py::arg("x"),
        "float32 array -> uint16 bfloat16 bits (round to nearest even; NaN -> quiet NaN).");
  m.def("from_fp16_bits", &from_bits<fp16_to_fp32>, py::arg("bits"), "uint16 half bits -> float32 (exact).");
  m.def("from_bf16_bits", &from_bits<bf16_to_fp32>, py::arg("bits"), "uint16 bfloat16 bits -> float32 (exact).");

  m.def(
      "pack_codes",
      [](const py::handle& codes_o, int bits) {
        LOWBIT_CHECK(bits >= 1 && bits <= 8, "bits must be in 1..8, got ", bits);
        auto codes = exact_array<std::uint8_t>(codes_o, "codes", {-1, -1});
        const i64 rows = codes.shape(0), cols = codes.shape(1);
        const std::uint8_t* src = codes.data();
        for (i64 i = 0; i < rows * cols; ++i)
          LOWBIT_CHECK(src[i] < (1u << bits), "codes[", i / std::max<i64>(cols, 1), ", ", i % std::max<i64>(cols, 1),
                       "]=", int(src[i]), " does not fit in ", bits, " bits");
        const i64 rb = (cols * bits + 7) / 8;
        py::array_t<std::uint8_t> out({rows, rb});
        std::uint8_t* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          for (i64 r = 0; r < rows; ++r) pack_codes(src + r * cols, cols, bits, dst + r * rb);
        }
        return out;
      },
      py::arg("codes"), py::arg("bits"),
      "Pack uint8 codes [rows, cols] into lowbit's LSB-first bit stream, uint8 [rows, ceil(cols*bits/8)].");
  m.def(
      "unpack_codes",
      [](const py::handle& packed_o, int bits, i64 cols) {
        LOWBIT_CHECK(bits >= 1 && bits <= 8, "bits must be in 1..8, got ", bits);
        LOWBIT_CHECK(cols > 0, "cols must be > 0, got ", cols);
        const i64 rb = (cols * bits + 7) / 8;
        auto packed = exact_array<std::uint8_t>(packed_o, "packed", {-1, rb});
        const i64 rows = packed.shape(0);
        py::array_t<std::uint8_t> out({rows, cols});
        const std::uint8_t* src = packed.data();
        std::uint8_t* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          for (i64 r = 0; r < rows; ++r) unpack_codes(src + r * rb, cols, bits, dst + r * cols);
        }
        return out;
      },
      py::arg("packed"), py::arg("bits"), py::arg("cols"),
      "Inverse of pack_codes: uint8 [rows, ceil(cols*bits/8)] -> uint8 codes [rows, cols].");

  m.def(
      "dequantize_grouped",
      [](const py::handle& qweight_o, const py::handle& scales_o, const py::handle& zeros_o, int bits, i64 rows,
         i64 cols, i64 group_size, bool per_tensor, const py::object& g_idx_o) {
        const GroupedIntShape s = grouped_shape_arg(bits, rows, cols, group_size, per_tensor);
        auto qw = exact_array<std::uint8_t>(qweight_o, "qweight", {rows, s.row_bytes()});
        auto sc = exact_array<float>(scales_o, "scales", {s.scale_rows(), s.n_groups()});
        auto zs = exact_array<std::uint8_t>(zeros_o, "zeros", {s.scale_rows(), s.n_groups()});
        py::array_t<std::int32_t, py::array::c_style> gi;
        GroupedIntConstView v{s, qw.data(), sc.data(), zs.data(), nullptr};
        if (!g_idx_o.is_none()) {
          gi = exact_array<std::int32_t>(g_idx_o, "g_idx", {cols});
          v.g_idx = gi.data();
        }
        validate_grouped(v);
        py::array_t<float> out({rows, cols});
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          dequantize_grouped(v, dst);
        }
        return out;
      },
      py::arg("qweight"), py::arg("scales"), py::arg("zeros"), py::arg("bits"), py::arg("rows"), py::arg("cols"),
      py::arg("group_size"), py::arg("per_tensor") = false, py::arg("g_idx") = py::none(),
      "Dequantize lowbit's canonical grouped layout (see grouped_int.hpp) to float32 [rows, cols].");
}
