#include "lowbit/parallel.hpp"

#include <omp.h>

#include <atomic>

namespace lowbit {

namespace {
std::atomic<int> g_num_threads{0};  // 0: OpenMP default
}

int get_num_threads() {
  const int n = g_num_threads.load();
  return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0); }

int threads_for(i64 n, i64 min_items_per_thread) {
  const int max_t = get_num_threads();
  if (min_items_per_thread < 1) min_items_per_thread = 1;
  const i64 by_work = n / min_items_per_thread;
  if (by_work <= 1) return 1;
  return by_work < max_t ? static_cast<int>(by_work) : max_t;
}

}  // namespace lowbit
