// Prefetcher: values made ahead on its thread, in-line when not asked for,
// errors rethrown at Take, a busy thread joined at destruction.
#include "worker/gcl/train/prefetcher.h"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace gcl::core {
namespace {

struct Made {
  int64_t step = -1;
  std::thread::id thread;
};

TEST(PrefetcherTest, TakesTheValueMadeAheadOnItsThread) {
  std::atomic<int> calls{0};
  Prefetcher<Made> p([&](int64_t t) {
    ++calls;
    return Made{t, std::this_thread::get_id()};
  });
  // Not asked for: made now, on this thread.
  Made first = p.Take(0);
  EXPECT_EQ(first.step, 0);
  EXPECT_EQ(first.thread, std::this_thread::get_id());
  for (int64_t t = 1; t <= 3; ++t) {
    p.Ahead(t);
    Made m = p.Take(t);
    EXPECT_EQ(m.step, t);
    EXPECT_NE(m.thread, std::this_thread::get_id());
  }
  EXPECT_EQ(calls.load(), 4);
  // Asked for another step than the one taken: that one is made in line.
  p.Ahead(7);
  Made other = p.Take(5);
  EXPECT_EQ(other.step, 5);
  EXPECT_EQ(other.thread, std::this_thread::get_id());
  EXPECT_EQ(calls.load(), 6);  // 7 was made and dropped
}

TEST(PrefetcherTest, AnErrorMadeAheadIsThrownByTake) {
  Prefetcher<int64_t> p([](int64_t t) -> int64_t {
    if (t == 2) throw std::runtime_error("step 2 has no data");
    return t * 10;
  });
  p.Ahead(2);
  try {
    p.Take(2);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "step 2 has no data");
  }
  p.Ahead(3);  // the thread goes on after an error
  EXPECT_EQ(p.Take(3), 30);
}

TEST(PrefetcherTest, DestructionWaitsForTheValueBeingMade) {
  std::atomic<bool> started{false}, finished{false};
  {
    Prefetcher<int> p([&](int64_t) {
      started = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      finished = true;
      return 1;
    });
    p.Ahead(1);
    while (!started) std::this_thread::yield();
  }
  EXPECT_TRUE(finished.load());
}

}  // namespace
}  // namespace gcl::core
