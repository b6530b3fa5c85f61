// The only place the bindings check and convert NumPy arrays. Every message names the
// argument, what it got (shape, dtype) and what was expected.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "lowbit/common.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit::py_utils {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (a.ndim() == 1 || i + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
  }
  return s + ")";
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string describe(const py::array& a) {
  return str_cat("shape ", shape_str(a), " dtype ", dtype_str(a));
}

// Any object -> ndarray, TypeError naming the argument when it is not array-like.
inline py::array as_array(const py::handle& obj, const char* name) {
  if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
  try {
    return py::array::ensure(obj);
  } catch (...) {
  }
  throw TypeMismatch(str_cat(name, " must be a NumPy array, got ", py::str(py::type::of(obj)).cast<std::string>()));
}

// A 2-D float matrix read in place (float32 / float16 / ml_dtypes.bfloat16, any strides);
// float64 is converted to float32 (the copy is kept alive in `holder`).
struct MatrixArg {
  AnyMatrixView view;
  py::array holder;
};

inline MatrixArg matrix_arg(const py::handle& obj, const char* name) {
  py::array a = as_array(obj, name);
  const py::dtype dt = a.dtype();
  const std::string dname = dtype_str(a);
  DType kind;
  if (dt.kind() == 'f' && dt.itemsize() == 8) {
    a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    kind = DType::F32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 4) {
    kind = DType::F32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 2) {
    kind = DType::F16;
  } else if (dname == "bfloat16" && dt.itemsize() == 2) {
    kind = DType::BF16;
  } else {
    throw TypeMismatch(str_cat(name, " must be a floating-point array (float32, float16, bfloat16 or float64), got ",
                               describe(a)));
  }
  if (a.ndim() != 2)
    throw InvalidArgument(str_cat(name, " must be a 2-D array (out_features, in_features), got a ",
                                  a.ndim(), "-D array of ", describe(a)));
  if (a.shape(0) == 0 || a.shape(1) == 0)
    throw InvalidArgument(str_cat(name, " must be non-empty, got ", describe(a)));
  const py::ssize_t item = a.itemsize();
  if (a.strides(0) % item != 0 || a.strides(1) % item != 0)
    throw InvalidArgument(str_cat(name, " has strides not aligned to its items: strides (", a.strides(0), ", ",
                                  a.strides(1), ") bytes for itemsize ", item, "; pass a copy"));
  MatrixArg m;
  m.view = AnyMatrixView(a.data(), kind, a.shape(0), a.shape(1), a.strides(0) / item, a.strides(1) / item);
  m.holder = a;
  return m;
}

// An array of exactly dtype T (TypeError otherwise), made C-contiguous (a copy if needed;
// only for inputs), with ndim and optional exact shape checked (-1 = any extent).
template <class T>
py::array_t<T, py::array::c_style> exact_array(const py::handle& obj, const char* name,
                                               const std::vector<py::ssize_t>& shape) {
  py::array a = as_array(obj, name);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw TypeMismatch(str_cat(name, " must have dtype ", py::str(py::dtype::of<T>()).cast<std::string>(),
                               ", got ", describe(a)));
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i)
    ok = shape[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == shape[i];
  if (!ok) {
    std::string want = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (i) want += ", ";
      want += shape[i] < 0 ? std::string("*") : std::to_string(shape[i]);
    }
    want += shape.size() == 1 ? ",)" : ")";
    throw InvalidArgument(str_cat(name, " must have shape ", want, ", got ", describe(a)));
  }
  return py::array_t<T, py::array::c_style>::ensure(a);
}

}  // namespace lowbit::py_utils
