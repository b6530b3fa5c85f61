// Arguments shared by the matmul bindings (qmatmul, ggml_qmatmul, the Llama runtime): the
// activation mode names and the activation matrix.
#pragma once

#include <string>

#include "array_utils.hpp"
#include "lowbit/format_table.hpp"
#include "lowbit/qmatmul.hpp"

namespace lowbit::py_utils {

// act= of the grouped-int kernels (lowbit/qmatmul.hpp).
inline QActMode parse_qact(const std::string& act) {
  if (act == "int8") return QActMode::Q8Block;
  if (act == "float32") return QActMode::F32;
  if (act == "int8_token") return QActMode::Q8Token;
  throw InvalidArgument(str_cat("act must be 'int8', 'float32' or 'int8_token', got '", act, "'"));
}

// act= of the GGUF kernels (lowbit/ggml_qmatmul.hpp): no W8A8 there.
inline QActMode parse_ggml_act(const std::string& act, QType fmt) {
  if (act == "int8") return QActMode::Q8Block;
  if (act == "float32") return QActMode::F32;
  if (act == "int8_token")
    throw InvalidArgument(str_cat("act='int8_token' (W8A8) is not available for GGUF format ", traits(fmt).name,
                                  "; use 'int8' (llama.cpp's activation rounding) or 'float32'"));
  throw InvalidArgument(str_cat("act must be 'int8' or 'float32' for GGUF formats, got '", act, "'"));
}

// act= of the table-lookup kernels (lowbit/lut_qmatmul.hpp): 'int8' and 'float32' both run the
// float path; no W8A8.
inline void check_lut_act(const std::string& act) {
  if (act == "int8_token")
    throw Unsupported("act='int8_token' (W8A8) needs 8-bit integer weights with one group per row; table "
                      "formats (nf4/fp4, hqq, int4_tinygemm, fp8) run act='float32' (or 'int8', the same path)");
  if (act != "int8" && act != "float32")
    throw InvalidArgument(str_cat("act must be 'int8', 'float32' or 'int8_token', got '", act, "'"));
}

// x [M, cols] as the kernels read it: float32 / float16 / bfloat16 in place when its rows are
// contiguous (float64 and others converted, strided arrays copied); `holder` keeps it alive.
struct ActivationArg {
  const void* data = nullptr;
  ActDType dtype = ActDType::F32;
  i64 rows = 0, ld = 0;
  py::array holder;
};

inline ActivationArg activation_arg(const py::handle& x_o, i64 cols) {
  MatrixArg X = matrix_arg(x_o, "x");
  if (X.view.col_stride != 1 || (X.view.rows > 1 && X.view.row_stride < X.view.cols))
    X = matrix_arg(py::module_::import("numpy").attr("ascontiguousarray")(X.holder), "x");
  if (X.view.cols != cols)
    throw InvalidArgument(str_cat("x must be [M, in_features=", cols, "], got ", describe(X.holder)));
  ActivationArg a;
  a.data = X.view.data;
  a.dtype = X.view.dtype == DType::F32 ? ActDType::F32 : X.view.dtype == DType::F16 ? ActDType::F16 : ActDType::BF16;
  a.rows = X.view.rows;
  a.ld = X.view.row_stride;
  a.holder = X.holder;
  return a;
}

}  // namespace lowbit::py_utils
