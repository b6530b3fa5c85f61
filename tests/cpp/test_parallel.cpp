#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "lowbit/parallel.hpp"

using namespace lowbit;

TEST(Parallel, VisitsEveryIndexOnce) {
  set_num_threads(2);
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(1000, [&](i64 i) { hits[static_cast<std::size_t>(i)]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  set_num_threads(0);
}

TEST(Parallel, ExceptionLeavesTheRegionAndIsRethrown) {
  set_num_threads(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(10000,
                            [&](i64 i) {
                              ran++;
                              if (i == 17) throw InvalidArgument("bad item 17");
                            }),
               InvalidArgument);
  EXPECT_GE(ran.load(), 1);
  set_num_threads(0);
}

TEST(Parallel, SmallProblemsRunOnOneThread) {
  set_num_threads(8);
  EXPECT_EQ(threads_for(10, 16), 1);
  EXPECT_EQ(threads_for(64, 16), 4);
  EXPECT_EQ(threads_for(1 << 20, 16), 8);
  set_num_threads(0);
  EXPECT_GE(get_num_threads(), 1);
}
