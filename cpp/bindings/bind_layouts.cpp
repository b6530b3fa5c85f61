// Checkpoint layouts of other tools: GPTQ int32 packing (v1 and v2 zero conventions).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "array_utils.hpp"
#include "lowbit/gptq_layout.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {
GptqFormat version_arg(int v) {
  LOWBIT_CHECK(v == 1 || v == 2, "version must be 1 (gptq, zeros stored minus one) or 2 (gptq_v2), got ", v);
  return static_cast<GptqFormat>(v);
}
}  // namespace

void register_layouts(py::module_& m) {
  m.def(
      "gptq_pack",
      [](const py::handle& qweight_o, const py::handle& zeros_o, int bits, i64 rows, i64 cols, i64 group_size,
         int version) {
        const GptqFormat fmt = version_arg(version);
        const GroupedIntShape s = make_grouped_shape(bits, rows, cols, group_size == 0 ? -1 : group_size);
        check_gptq_packable(bits, rows, cols);
        auto qw = exact_array<std::uint8_t>(qweight_o, "qweight", {rows, s.row_bytes()});
        auto zs = exact_array<std::uint8_t>(zeros_o, "zeros", {rows, s.n_groups()});
        GroupedIntConstView v{s, qw.data(), nullptr, zs.data(), nullptr};
        py::array_t<std::int32_t> qweight_out({cols * bits / 32, rows});
        py::array_t<std::int32_t> qzeros_out({s.n_groups(), rows * bits / 32});
        std::int32_t* a = qweight_out.mutable_data();
        std::int32_t* b = qzeros_out.mutable_data();
        {
          py::gil_scoped_release release;
          gptq_pack(v, fmt, a, b);
        }
        return py::make_tuple(qweight_out, qzeros_out);
      },
      py::arg("qweight"), py::arg("zeros"), py::arg("bits"), py::arg("rows"), py::arg("cols"),
      py::arg("group_size"), py::arg("version") = 1,
      R"doc(Canonical grouped codes -> GPTQ checkpoint tensors.

qweight: uint8 [rows=out, ceil(cols*bits/8)] canonical bit stream; zeros: uint8 [rows, n_groups].
Returns (qweight int32 [cols*bits/32, rows], qzeros int32 [n_groups, rows*bits/32]).
version 1 stores zero-1 (AutoGPTQ "gptq"), 2 stores zero ("gptq_v2").)doc");
  m.def(
      "gptq_unpack",
      [](const py::handle& qweight_o, const py::handle& qzeros_o, int bits, i64 rows, i64 cols, i64 group_size,
         int version) {
        const GptqFormat fmt = version_arg(version);
        const GroupedIntShape s = make_grouped_shape(bits, rows, cols, group_size == 0 ? -1 : group_size);
        check_gptq_packable(bits, rows, cols);
        auto qw = exact_array<std::int32_t>(qweight_o, "qweight", {cols * bits / 32, rows});
        auto qz = exact_array<std::int32_t>(qzeros_o, "qzeros", {s.n_groups(), rows * bits / 32});
        py::array_t<std::uint8_t> codes({rows, s.row_bytes()});
        py::array_t<std::uint8_t> zeros({rows, s.n_groups()});
        GroupedIntMutView out{s, codes.mutable_data(), nullptr, zeros.mutable_data()};
        const std::int32_t* a = qw.data();
        const std::int32_t* b = qz.data();
        {
          py::gil_scoped_release release;
          gptq_unpack(a, b, fmt, out);
        }
        return py::make_tuple(codes, zeros);
      },
      py::arg("qweight"), py::arg("qzeros"), py::arg("bits"), py::arg("rows"), py::arg("cols"),
      py::arg("group_size"), py::arg("version") = 1,
      "GPTQ checkpoint tensors -> (canonical qweight uint8 [rows, ceil(cols*bits/8)], zeros uint8 [rows, n_groups]).");
}
