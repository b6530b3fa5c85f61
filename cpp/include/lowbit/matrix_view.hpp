// Non-owning, strided 2-D views over float32 / float16 / bfloat16 data.
//
// Strides are in elements and may be any value NumPy produces (including negative and
// zero), so a transposed, sliced or broadcast array is read in place without a copy.
// The owner of the memory (NumPy, a std::vector, ...) outlives the view.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/common.hpp"
#include "lowbit/half.hpp"

namespace lowbit {

enum class DType : std::uint8_t { F32 = 0, F16 = 1, BF16 = 2 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
  }
  return "?";
}

// A typed view: element (r, c) lives at data[r * row_stride + c * col_stride].
template <class T>
struct MatrixView {
  T* data = nullptr;
  i64 rows = 0, cols = 0;
  i64 row_stride = 0, col_stride = 1;

  MatrixView() = default;
  MatrixView(T* d, i64 r, i64 c) : data(d), rows(r), cols(c), row_stride(c), col_stride(1) {}
  MatrixView(T* d, i64 r, i64 c, i64 rs, i64 cs)
      : data(d), rows(r), cols(c), row_stride(rs), col_stride(cs) {}

  T& operator()(i64 r, i64 c) const { return data[r * row_stride + c * col_stride]; }
  T* row(i64 r) const { return data + r * row_stride; }
  i64 size() const { return rows * cols; }
};

// A view whose element type is known only at run time (what the bindings receive).
struct AnyMatrixView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  i64 rows = 0, cols = 0;
  i64 row_stride = 0, col_stride = 1;  // in elements

  AnyMatrixView() = default;
  AnyMatrixView(const float* d, i64 r, i64 c)
      : data(d), dtype(DType::F32), rows(r), cols(c), row_stride(c), col_stride(1) {}
  AnyMatrixView(const void* d, DType t, i64 r, i64 c, i64 rs, i64 cs)
      : data(d), dtype(t), rows(r), cols(c), row_stride(rs), col_stride(cs) {}

  std::string describe() const {
    return str_cat("shape (", rows, ", ", cols, ") dtype ", dtype_name(dtype));
  }

  // Copy row r, converted to float32, into out[0 .. cols).
  void load_row(i64 r, float* out) const {
    switch (dtype) {
      case DType::F32: {
        const float* p = static_cast<const float*>(data) + r * row_stride;
        if (col_stride == 1) {
          for (i64 c = 0; c < cols; ++c) out[c] = p[c];
        } else {
          for (i64 c = 0; c < cols; ++c) out[c] = p[c * col_stride];
        }
        break;
      }
      case DType::F16: {
        const std::uint16_t* p = static_cast<const std::uint16_t*>(data) + r * row_stride;
        for (i64 c = 0; c < cols; ++c) out[c] = fp16_to_fp32(p[c * col_stride]);
        break;
      }
      case DType::BF16: {
        const std::uint16_t* p = static_cast<const std::uint16_t*>(data) + r * row_stride;
        for (i64 c = 0; c < cols; ++c) out[c] = bf16_to_fp32(p[c * col_stride]);
        break;
      }
    }
  }
};

// The error for a non-finite weight W[r, c], naming its value and the view.
[[noreturn]] inline void throw_non_finite_weight(const AnyMatrixView& W, i64 r, i64 c) {
  std::vector<float> row(static_cast<std::size_t>(W.cols));
  W.load_row(r, row.data());
  throw InvalidArgument(str_cat("W must be finite, but W[", r, ", ", c, "] = ", row[static_cast<std::size_t>(c)],
                                " (", W.describe(), "); replace or mask NaN/inf weights before quantizing"));
}

// After a parallel pass that marked, per row, the first non-finite column (or -1): throws for the
// first marked row, so the message names the same element for any thread count.
inline void check_non_finite_marks(const AnyMatrixView& W, const std::vector<i64>& bad_col) {
  for (i64 r = 0; r < static_cast<i64>(bad_col.size()); ++r)
    if (bad_col[static_cast<std::size_t>(r)] >= 0) throw_non_finite_weight(W, r, bad_col[static_cast<std::size_t>(r)]);
}

}  // namespace lowbit
