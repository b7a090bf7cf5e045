// Makes the next step's input on one long-lived thread while the caller
// trains on this step's. make(t) must be a pure function of t (the batches'
// sampler and augmentation seeds are), so a value made ahead is the value
// the caller would have made itself.
//
// One thread for the whole run, not one per step: with OpenMP every new
// thread brings up its own team of intra-op threads, which cost more than a
// small batch takes to make (measured on the 2-core CI VM, docs/performance.md).
//
// Thread-safety: Ahead and Take are called from one thread (the trainer's).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace gcl::core {

template <typename T>
class Prefetcher {
 public:
  explicit Prefetcher(std::function<T(int64_t)> make) : make_(std::move(make)) {}
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  // Ends the thread, after the value it is making, if any.
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Starts making make(t) on the thread; a value made ahead and not taken
  // is dropped.
  void Ahead(int64_t t) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !busy_; });
      want_ = t;
      busy_ = true;
      made_.reset();
      error_ = nullptr;
    }
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
    cv_.notify_all();
  }

  // make(t): the value made ahead when Ahead(t) was the last call (waiting
  // for it; its exception is rethrown here), else made now on this thread.
  T Take(int64_t t) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !busy_; });
    if (want_ != t) {
      lock.unlock();
      return make_(t);
    }
    want_ = -1;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    T value = std::move(*made_);
    made_.reset();
    return value;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || (busy_ && !made_ && !error_); });
      if (stop_) return;
      const int64_t t = want_;
      lock.unlock();
      std::optional<T> value;
      std::exception_ptr error;
      try {
        value.emplace(make_(t));
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      made_ = std::move(value);
      error_ = error;
      busy_ = false;
      cv_.notify_all();
    }
  }

  const std::function<T(int64_t)> make_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  bool busy_ = false;     // the thread is making want_'s value
  int64_t want_ = -1;     // the step asked for with Ahead; -1: none
  std::optional<T> made_;
  std::exception_ptr error_;
};

}  // namespace gcl::core
