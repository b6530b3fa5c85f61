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

// str(a.dtype): a Python-level call (~10 us): for error messages only (the helpers below
// call describe() / dtype_str() when they throw, never on the way to a successful call).
inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string describe(const py::array& a) {
  return str_cat("shape ", shape_str(a), " dtype ", dtype_str(a));
}

inline std::string strides_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += std::to_string(a.strides(i)) + (i + 1 < a.ndim() ? ", " : "");
  return s + ")";
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

// Whether `a` holds T in native byte order. Equality, not identity: NumPy hands out equal
// dtype objects that are not its singletons (a memmap's dtype('<f4'), dtypes with metadata);
// a non-native byte order ('>f4') is not equal.
template <class T>
bool has_dtype(const py::array& a) {
  return a.dtype().equal(py::dtype::of<T>());
}

// Whether dt is ml_dtypes' bfloat16, a NumPy user dtype known by its name only. str(dtype) is
// a Python-level call (~10 us, and linear runs hundreds of times per token), so once a
// bfloat16 has been seen its scalar type is remembered (a reference kept for the process) and
// later calls compare that pointer. Other 2-byte non-float dtypes (errors) still ask the name.
inline bool is_bfloat16(const py::dtype& dt) {
  if (dt.itemsize() != 2 || dt.kind() == 'f') return false;
  static PyObject* bf16_type = nullptr;  // guarded by the GIL
  const py::object type = dt.attr("type");
  if (bf16_type != nullptr && type.ptr() == bf16_type) return true;
  if (py::str(dt).cast<std::string>() != "bfloat16") return false;
  if (bf16_type == nullptr) bf16_type = type.inc_ref().ptr();
  return true;
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
  DType kind;
  if ((dt.kind() == 'f' && dt.itemsize() == 8) || (dt.kind() == 'f' && !dt.attr("isnative").cast<bool>())) {
    // float64, or a float in non-native byte order: a native float32 copy
    a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    kind = DType::F32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 4) {
    kind = DType::F32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 2) {
    kind = DType::F16;
  } else if (is_bfloat16(dt)) {
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
  if (!has_dtype<T>(a))
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

// An array of exactly dtype T and `ndim` dimensions that an op writes in place: it must be a
// NumPy array (no conversion: a copy would silently drop the result), C-contiguous and writeable.
template <class T>
py::array_t<T, py::array::c_style> inplace_array(const py::handle& obj, const char* name, py::ssize_t ndim) {
  if (!py::isinstance<py::array>(obj))
    throw TypeMismatch(str_cat(name, " must be a NumPy array (it is modified in place), got ",
                               py::str(py::type::of(obj)).cast<std::string>()));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!has_dtype<T>(a))
    throw TypeMismatch(str_cat(name, " must have dtype ", py::str(py::dtype::of<T>()).cast<std::string>(),
                               " (it is modified in place), got ", describe(a)));
  if (a.ndim() != ndim)
    throw InvalidArgument(str_cat(name, " must be a ", ndim, "-D array, got ", describe(a)));
  if (!(a.flags() & py::array::c_style))
    throw InvalidArgument(str_cat(name, " must be C-contiguous (it is modified in place), got ", describe(a),
                                  " with strides ", strides_str(a), "; pass np.ascontiguousarray(", name,
                                  ") and use the result"));
  if (!a.writeable()) throw InvalidArgument(str_cat(name, " is read-only, but it is modified in place"));
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

// An array of exactly dtype T and `ndim` dimensions, read in place when its last axis is
// contiguous whatever its other strides (a slice of a larger buffer such as a KV cache);
// otherwise a C-contiguous copy. Strides of the result are multiples of sizeof(T).
template <class T>
py::array last_axis_contiguous_array(const py::handle& obj, const char* name, py::ssize_t ndim) {
  py::array a = as_array(obj, name);
  if (!has_dtype<T>(a))
    throw TypeMismatch(str_cat(name, " must have dtype ", py::str(py::dtype::of<T>()).cast<std::string>(),
                               ", got ", describe(a)));
  if (a.ndim() != ndim) throw InvalidArgument(str_cat(name, " must be a ", ndim, "-D array, got ", describe(a)));
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  bool in_place = a.strides(ndim - 1) == item || a.shape(ndim - 1) <= 1;
  for (py::ssize_t i = 0; in_place && i < ndim; ++i) in_place = a.strides(i) % item == 0;
  if (in_place) return a;
  return py::array_t<T, py::array::c_style>::ensure(a);
}

}  // namespace lowbit::py_utils
