// The statistics pass: one capture of a linear layer's inputs feeds every method.
//
//   H            = (2 / N) * sum over tokens of x x^T   (GPTQ's Hessian, REFERENCE.md §1.2)
//   act_mean_sq  = mean over tokens of x^2 per column    (llama.cpp's importance matrix)
//   act_mean_abs = mean over tokens of |x| per column    (AWQ's activation statistic)
//
// N counts *samples* (sequences), as the reference does: a batch of shape (B, T, in) adds B,
// a 2-D batch (T, in) adds 1. H is kept as a running average (scaled by N_old / N_new before
// each batch is added), so its scale does not depend on how the data was batched.
#pragma once

#include <vector>

#include "lowbit/matrix_view.hpp"

namespace lowbit {

class HessianAccumulator {
 public:
  enum class Precision { F32, F64 };

  HessianAccumulator(i64 in_features, Precision precision);

  // X [tokens, in_features] (any dtype/strides); n_samples >= 1 sequences in this batch.
  // Throws InvalidArgument for a wrong width or a non-finite value (naming its position).
  void add(const AnyMatrixView& X, i64 n_samples);
  void reset();

  i64 in_features() const { return n_; }
  Precision precision() const { return precision_; }
  i64 n_samples() const { return n_samples_; }
  i64 n_tokens() const { return n_tokens_; }

  // Full symmetric H [n, n] row-major (zeros before the first batch).
  void hessian(float* out) const;
  void hessian(double* out) const;
  void act_mean_sq(double* out) const;   // [n]
  void act_mean_abs(double* out) const;  // [n]

 private:
  template <class T>
  void copy_symmetric(T* out) const;

  i64 n_;
  Precision precision_;
  i64 n_samples_ = 0, n_tokens_ = 0;
  std::vector<float> h32_;   // lower triangle valid
  std::vector<double> h64_;
  std::vector<double> sum_sq_, sum_abs_;
};

}  // namespace lowbit
