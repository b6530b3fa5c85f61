#include "lowbit/hessian.hpp"

#include <algorithm>
#include <cmath>

#include "lowbit/linalg.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

HessianAccumulator::HessianAccumulator(i64 in_features, Precision precision)
    : n_(in_features), precision_(precision) {
  LOWBIT_CHECK(in_features > 0, "in_features must be > 0, got ", in_features);
  LOWBIT_CHECK(in_features <= 65536, "in_features=", in_features, " is too large for a dense Hessian (max 65536)");
  reset();
}

void HessianAccumulator::reset() {
  const auto nn = static_cast<std::size_t>(n_ * n_);
  if (precision_ == Precision::F32) {
    h32_.assign(nn, 0.0f);
  } else {
    h64_.assign(nn, 0.0);
  }
  sum_sq_.assign(static_cast<std::size_t>(n_), 0.0);
  sum_abs_.assign(static_cast<std::size_t>(n_), 0.0);
  n_samples_ = n_tokens_ = 0;
}

void HessianAccumulator::add(const AnyMatrixView& X, i64 n_samples) {
  LOWBIT_CHECK(X.cols == n_, "X.shape[-1]=", X.cols, " must equal in_features=", n_);
  LOWBIT_CHECK(X.rows > 0, "X must hold at least one token, got ", X.describe());
  LOWBIT_CHECK(n_samples >= 1, "n_samples must be >= 1, got ", n_samples);
  const i64 T = X.rows;

  // float32 rows, contiguous (read in place when they already are).
  std::vector<float> buf;
  const float* x = nullptr;
  i64 ldx = n_;
  if (X.dtype == DType::F32 && X.col_stride == 1 && X.row_stride >= n_) {
    x = static_cast<const float*>(X.data);
    ldx = X.row_stride;
  } else {
    buf.resize(static_cast<std::size_t>(T * n_));
    parallel_for(T, [&](i64 t) { X.load_row(t, buf.data() + t * n_); }, 64);
    x = buf.data();
  }

  // Column statistics (and the finiteness check) in fixed order per column.
  std::vector<double> sq(static_cast<std::size_t>(n_)), ab(static_cast<std::size_t>(n_));
  std::vector<i64> bad(static_cast<std::size_t>(n_), -1);
  constexpr i64 kCols = 64;  // column block: stream rows, accumulate 64 columns at a time
  parallel_for((n_ + kCols - 1) / kCols, [&](i64 blk) {
    const i64 c0 = blk * kCols, nc = std::min(kCols, n_ - c0);
    double s2[kCols] = {}, s1[kCols] = {};
    for (i64 t = 0; t < T; ++t) {
      const float* row = x + t * ldx + c0;
      for (i64 j = 0; j < nc; ++j) {
        const double v = row[j];
        s2[j] += v * v;
        s1[j] += std::fabs(v);
      }
    }
    for (i64 j = 0; j < nc; ++j) {
      const auto c = static_cast<std::size_t>(c0 + j);
      sq[c] = s2[j];
      ab[c] = s1[j];
      if (!std::isfinite(s2[j]))  // some x in this column is NaN/inf: find the first
        for (i64 t = 0; t < T; ++t)
          if (!std::isfinite(x[t * ldx + c0 + j])) {
            bad[c] = t;
            break;
          }
    }
  });
  i64 bad_t = -1, bad_c = -1;
  for (i64 c = 0; c < n_; ++c) {
    const i64 t = bad[static_cast<std::size_t>(c)];
    if (t >= 0 && (bad_t < 0 || t < bad_t)) bad_t = t, bad_c = c;
  }
  if (bad_t >= 0)
    throw InvalidArgument(str_cat("X must be finite, but X[", bad_t, ", ", bad_c, "] = ", x[bad_t * ldx + bad_c],
                                  " (rows are tokens after flattening the leading dimensions)"));

  // Running average as the reference: H *= N/(N+B); N += B; H += (2/N) X^T X.
  const i64 total = n_samples_ + n_samples;
  const double beta = static_cast<double>(n_samples_) / static_cast<double>(total);
  const double alpha = 2.0 / static_cast<double>(total);
  const LinalgKernels& k = linalg_kernels();
  if (precision_ == Precision::F32) {
    k.syrk_lower_f32(x, T, n_, ldx, static_cast<float>(alpha), static_cast<float>(beta), h32_.data());
  } else {
    k.syrk_lower_f64(x, T, n_, ldx, alpha, beta, h64_.data());
  }
  for (i64 c = 0; c < n_; ++c) {
    sum_sq_[static_cast<std::size_t>(c)] += sq[static_cast<std::size_t>(c)];
    sum_abs_[static_cast<std::size_t>(c)] += ab[static_cast<std::size_t>(c)];
  }
  n_samples_ = total;
  n_tokens_ += T;
}

template <class T>
void HessianAccumulator::copy_symmetric(T* out) const {
  parallel_for(n_, [&](i64 i) {
    for (i64 j = 0; j < n_; ++j) {
      const i64 a = i >= j ? i : j, b = i >= j ? j : i;  // lower-triangle element
      const std::size_t idx = static_cast<std::size_t>(a * n_ + b);
      out[i * n_ + j] = precision_ == Precision::F32 ? static_cast<T>(h32_[idx]) : static_cast<T>(h64_[idx]);
    }
  }, 16);
}

void HessianAccumulator::hessian(float* out) const { copy_symmetric(out); }
void HessianAccumulator::hessian(double* out) const { copy_symmetric(out); }

void HessianAccumulator::act_mean_sq(double* out) const {
  for (i64 c = 0; c < n_; ++c)
    out[c] = n_tokens_ > 0 ? sum_sq_[static_cast<std::size_t>(c)] / static_cast<double>(n_tokens_) : 0.0;
}
void HessianAccumulator::act_mean_abs(double* out) const {
  for (i64 c = 0; c < n_; ++c)
    out[c] = n_tokens_ > 0 ? sum_abs_[static_cast<std::size_t>(c)] / static_cast<double>(n_tokens_) : 0.0;
}

}  // namespace lowbit
