// Quantized matmul (lowbit/qmatmul.hpp): the prepared-weight object and the product.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <algorithm>
#include <string>
#include <vector>

#include "array_utils.hpp"
#include "matmul_args.hpp"
#include "lowbit/int8_peak.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/qmatmul.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

// Fixed 1 MiB chunks (independent of the thread count) for the bandwidth probes.
constexpr i64 kChunk = 1 << 20;

}  // namespace

void register_qmatmul(py::module_& m) {
  py::class_<PackedWeights, std::shared_ptr<PackedWeights>>(m, "PackedWeights", R"doc(
Weights repacked once into the quantized-matmul kernel layout (see lowbit/qmatmul.hpp):
32-column blocks, groups contiguous (act-order resolved), nibbles for <= 4 bits, int8 above.
Immutable; made by prepare_grouped and used by qmatmul.)doc")
      .def_property_readonly("rows", [](const PackedWeights& w) { return w.rows; })
      .def_property_readonly("cols", [](const PackedWeights& w) { return w.cols; })
      .def_property_readonly("bits", [](const PackedWeights& w) { return w.bits; })
      .def_property_readonly("n_blocks", [](const PackedWeights& w) { return w.n_blocks; })
      .def_property_readonly("n_groups", [](const PackedWeights& w) { return w.n_groups; })
      .def_property_readonly("container",
                             [](const PackedWeights& w) { return w.container == QContainer::Nibble ? "nibble" : "byte"; })
      .def_property_readonly("reordered", [](const PackedWeights& w) { return !w.col_of.empty(); },
                             "Whether input columns are reordered/padded (act-order or groups not multiple of 32).")
      .def_property_readonly("nbytes", [](const PackedWeights& w) { return w.nbytes(); },
                             "Bytes one product streams: codes + scales + offsets.")
      .def("__repr__", [](const PackedWeights& w) {
        return str_cat("PackedWeights(int", w.bits, ", shape=(", w.rows, ", ", w.cols, "), groups=", w.n_groups,
                       ", blocks=", w.n_blocks, ", nbytes=", w.nbytes(), ")");
      });

  m.def(
      "prepare_grouped",
      [](const py::handle& qweight_o, const py::handle& scales_o, const py::handle& zeros_o, int bits, i64 rows,
         i64 cols, i64 group_size, bool per_tensor, const py::object& g_idx_o) {
        const GroupedIntShape s = make_grouped_shape(bits, rows, cols, per_tensor ? 0 : group_size);
        auto qw = exact_array<std::uint8_t>(qweight_o, "qweight", {rows, s.row_bytes()});
        auto sc = exact_array<float>(scales_o, "scales", {s.scale_rows(), s.n_groups()});
        auto zs = exact_array<std::uint8_t>(zeros_o, "zeros", {s.scale_rows(), s.n_groups()});
        py::array_t<std::int32_t, py::array::c_style> gi;
        GroupedIntConstView v{s, qw.data(), sc.data(), zs.data(), nullptr};
        if (!g_idx_o.is_none()) {
          gi = exact_array<std::int32_t>(g_idx_o, "g_idx", {cols});
          v.g_idx = gi.data();
        }
        py::gil_scoped_release release;
        return prepare_grouped(v);
      },
      py::arg("qweight"), py::arg("scales"), py::arg("zeros"), py::arg("bits"), py::arg("rows"), py::arg("cols"),
      py::arg("group_size"), py::arg("per_tensor") = false, py::arg("g_idx") = py::none(),
      "Repack lowbit's canonical grouped layout (grouped_int.hpp; same arguments as dequantize_grouped) into a "
      "PackedWeights for qmatmul. Done once per weight.");

  m.def(
      "prepare_affine",
      [](const py::handle& codes_o, const py::handle& scale_o, const py::handle& offset_o, int bits,
         i64 group_size) {
        auto codes = exact_array<std::uint8_t>(codes_o, "codes", {-1, -1});
        const i64 rows = codes.shape(0), cols = codes.shape(1);
        LOWBIT_CHECK(group_size > 0 && cols % group_size == 0, "group_size must divide in_features=", cols, ", got ",
                     group_size);
        auto sc = exact_array<float>(scale_o, "scale", {rows, cols / group_size});
        auto off = exact_array<float>(offset_o, "offset", {rows, cols / group_size});
        py::gil_scoped_release release;
        return prepare_affine(codes.data(), sc.data(), off.data(), bits, rows, cols, group_size);
      },
      py::arg("codes"), py::arg("scale"), py::arg("offset"), py::arg("bits"), py::arg("group_size"),
      "W_hat = scale[r, g] * codes[r, c] + offset[r, g] (codes uint8 [out, in] < 2^bits, bits <= 4; scale/offset "
      "float32 [out, in / group_size]) -> PackedWeights for qmatmul: affine formats with a float zero (HQQ, "
      "int4 tinygemm) on the grouped-int kernels. Done once per weight.");

  m.def(
      "prepare_table4",
      [](const py::handle& codes_o, const py::handle& table_o, const py::handle& scale_o, i64 group_size) {
        auto codes = exact_array<std::uint8_t>(codes_o, "codes", {-1, -1});
        const i64 rows = codes.shape(0), cols = codes.shape(1);
        LOWBIT_CHECK(group_size > 0 && cols % group_size == 0, "group_size must divide in_features=", cols, ", got ",
                     group_size);
        auto tb = exact_array<float>(table_o, "table", {16});
        auto sc = exact_array<float>(scale_o, "scale", {rows, cols / group_size});
        py::gil_scoped_release release;
        return prepare_table4(codes.data(), tb.data(), sc.data(), rows, cols, group_size);
      },
      py::arg("codes"), py::arg("table"), py::arg("scale"), py::arg("group_size"),
      "W_hat = scale[r, g] * table[codes[r, c]] (codes uint8 [out, in] < 16; table float32 [16]; scale float32 "
      "[out, in / group_size]) -> PackedWeights for qmatmul: NF4/FP4 on the nibble kernels. act='float32' uses "
      "the float table exactly; act='int8' the table rounded to int8 (127 / max|table| steps: |error| <= "
      "scale * max|table| / 254 per weight) against int8 activation blocks.");

  m.def(
      "qmatmul",
      [](const py::handle& x_o, const std::shared_ptr<PackedWeights>& w, const std::string& act,
         const py::object& isa_o) {
        if (!w) throw TypeMismatch("w must be a PackedWeights, got None");
        const QActMode mode = parse_qact(act);
        const QMatmulKernels& k = isa_o.is_none() ? qmatmul_kernels() : qmatmul_kernels(parse_isa(isa_o.cast<std::string>()));
        const ActivationArg X = activation_arg(x_o, w->cols);
        py::array_t<float> y({X.rows, w->rows});
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          qmatmul(X.data, X.dtype, X.rows, X.ld, *w, mode, yp, k);
        }
        return y;
      },
      py::arg("x"), py::arg("w"), py::arg("act") = "int8", py::arg("isa") = py::none(),
      R"doc(Quantized matmul y = x @ W_hat.T straight from packed weights.

x: float32 / float16 / bfloat16 (float64 is converted) [M, in_features]; w: PackedWeights.
act: 'int8' (activations quantized per 32-column block to int8, ggml Q8_0 style; error vs the
float product <= sum_k |W_hat[r,k]| * d_block(k) / 2), 'float32' (dequantized weight tiles x
float32 GEMM), 'int8_token' (W8A8: per-token int8 activations, 8-bit weights with one group per
row, exact int32 accumulation). isa: None (active) or 'scalar' / 'avx2' / 'avx512' / 'neon' (tests).
Returns float32 [M, out_features]. Bit-identical for any thread count.)doc");

  m.def(
      "int8_peak",
      [](double seconds) {
        Int8Peak p;
        {
          py::gil_scoped_release release;
          p = measure_int8_peak(seconds);
        }
        py::dict d;
        d["gops"] = p.gops;
        d["instruction"] = p.instruction;
        d["threads"] = p.threads;
        return d;
      },
      py::arg("seconds") = 0.2,
      "The int8 dot-product instruction peak of this CPU, measured on lowbit's threads for about `seconds`: "
      "{'gops': 2 x multiply-adds per second / 1e9, 'instruction': what was timed, 'threads'}. Registers "
      "only (lowbit/int8_peak.hpp); the denominator of the W8A8 prefill figure. NotImplementedError without "
      "AVX2 / AVX-512 VNNI.");

  // STREAM-style probes for bench/bench_kernels.py: the read bandwidth the decode kernels
  // are measured against, with lowbit's own threads (parallel_for), the GIL released.
  m.def(
      "stream_read",
      [](const py::handle& buf_o) {
        auto buf = exact_array<std::uint8_t>(buf_o, "buf", {-1});
        const i64 n = buf.shape(0) / 8;
        const auto* p = reinterpret_cast<const std::uint64_t*>(buf.data());
        const i64 n_chunks = (n * 8 + kChunk - 1) / kChunk;
        std::vector<std::uint64_t> part(static_cast<std::size_t>(n_chunks));
        {
          py::gil_scoped_release release;
          parallel_for(n_chunks, [&](i64 c) {
            const i64 b = c * (kChunk / 8), e = std::min(n, b + kChunk / 8);
            std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // integer adds vectorise exactly
            i64 i = b;
            for (; i + 4 <= e; i += 4) {
              s0 += p[i];
              s1 += p[i + 1];
              s2 += p[i + 2];
              s3 += p[i + 3];
            }
            for (; i < e; ++i) s0 += p[i];
            part[static_cast<std::size_t>(c)] = s0 + s1 + s2 + s3;
          });
        }
        std::uint64_t s = 0;
        for (std::uint64_t v : part) s += v;
        return s;
      },
      py::arg("buf"), "Read every 8-byte word of uint8 buf [n] (a checksum): the read-bandwidth probe.");
  m.def(
      "stream_triad",
      [](const py::handle& a_o, const py::handle& b_o, const py::handle& c_o, float s) {
        auto b = exact_array<float>(b_o, "b", {-1});
        const i64 n = b.shape(0);
        auto c = exact_array<float>(c_o, "c", {n});
        auto a = inplace_array<float>(a_o, "a", 1);
        LOWBIT_CHECK(a.shape(0) == n, "a must have the length of b, got ", describe(a));
        float* ap = a.mutable_data();
        const float* bp = b.data();
        const float* cp = c.data();
        py::gil_scoped_release release;
        const i64 step = kChunk / 4;
        parallel_for((n + step - 1) / step, [&](i64 t) {
          const i64 e = std::min(n, (t + 1) * step);
          for (i64 i = t * step; i < e; ++i) ap[i] = bp[i] + s * cp[i];
        });
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("s"), "STREAM triad a = b + s*c (float32, in place).");
}
