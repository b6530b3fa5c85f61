// lowbit._core: the pybind11 module. Each area registers itself from its own file.
#include <pybind11/pybind11.h>

#include "lowbit/common.hpp"

namespace py = pybind11;

void register_system(py::module_& m);
void register_formats(py::module_& m);
void register_quantizers(py::module_& m);
void register_layouts(py::module_& m);
void register_ops(py::module_& m);
void register_bnb(py::module_& m);
void register_calibration_free(py::module_& m);
void register_hqq(py::module_& m);
void register_qmatmul(py::module_& m);
void register_awq(py::module_& m);
void register_ggml_qmatmul(py::module_& m);
void register_llama_runtime(py::module_& m);
void register_lut_qmatmul(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "lowbit's compiled core: formats, quantizers and kernels over NumPy arrays.";
  m.attr("__version__") = LOWBIT_VERSION;

  // C++ error types -> Python exceptions (std::invalid_argument is ValueError already).
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const lowbit::TypeMismatch& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const lowbit::Unsupported& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    }
  });

  register_system(m);
  register_formats(m);
  register_quantizers(m);
  register_layouts(m);
  register_ops(m);
  register_bnb(m);
  register_calibration_free(m);
  register_hqq(m);
  register_qmatmul(m);
  register_awq(m);
  register_ggml_qmatmul(m);
  register_llama_runtime(m);
  register_lut_qmatmul(m);
}
