// parallel_for: the only way lowbit enters an OpenMP region.
//
// An exception thrown inside an OpenMP region would terminate the process, so every
// iteration runs inside try/catch; the first exception is kept, the remaining iterations
// are skipped, and it is rethrown on the calling thread after the region (hnswlib's
// ParallelFor discipline). Iterations must be independent: results then do not depend on
// the thread count.
#pragma once

#include <atomic>
#include <exception>

#include "lowbit/common.hpp"

namespace lowbit {

// Threads used by lowbit's parallel regions (default: OpenMP's max, i.e. OMP_NUM_THREADS).
int get_num_threads();
// n <= 0 restores the default.
void set_num_threads(int n);

// Number of threads to use for `n` work items of which each thread should get at least
// `min_items_per_thread` (small problems run on one thread).
int threads_for(i64 n, i64 min_items_per_thread);

// Rows per thread for a loop over rows of `row_elems` cheap elements: below ~16K elements per
// thread, waking a second thread costs more than it saves (and on a loaded machine far more).
inline i64 min_rows_per_thread(i64 row_elems, i64 min_elems = 16384) {
  return row_elems >= min_elems ? 1 : min_elems / (row_elems > 0 ? row_elems : 1);
}

namespace detail {
// Runs loop items inside an OpenMP region: keeps the first exception, skips the rest.
class ErrorSink {
 public:
  template <class F>
  void run(F& fn, i64 i) {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      fn(i);
    } catch (...) {
#pragma omp critical(lowbit_parallel_for_error)
      {
        if (!error_) error_ = std::current_exception();
      }
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  void rethrow() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
};
}  // namespace detail

template <class F>
void parallel_for(i64 n, F&& fn, i64 min_items_per_thread = 1) {
  if (n <= 0) return;
  const int nt = threads_for(n, min_items_per_thread);
  if (nt <= 1) {
    for (i64 i = 0; i < n; ++i) fn(i);
    return;
  }
  detail::ErrorSink sink;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (i64 i = 0; i < n; ++i) sink.run(fn, i);
  sink.rethrow();
}

// As parallel_for, but items are handed out one at a time (schedule(dynamic, 1)): for items
// of very different cost. Each item still computes the same result whichever thread runs it.
template <class F>
void parallel_for_dynamic(i64 n, F&& fn) {
  if (n <= 0) return;
  const int nt = threads_for(n, 1);
  if (nt <= 1) {
    for (i64 i = 0; i < n; ++i) fn(i);
    return;
  }
  detail::ErrorSink sink;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (i64 i = 0; i < n; ++i) sink.run(fn, i);
  sink.rethrow();
}

}  // namespace lowbit
