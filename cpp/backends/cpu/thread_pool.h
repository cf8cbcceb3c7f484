// thread_pool.h: the CPU backend's worker threads. One pool per backend; every parallel
// operation of a forward pass (a linear layer, attention over heads, ...) is one run() call, so
// a decode step of a 30-layer model makes a few hundred of them: run() must cost microseconds,
// which is why idle workers spin briefly before they sleep.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace awq_edge::cpu {

// The number of physical cores of this machine (hyper-threads not counted), at least 1.
int physical_core_count();

class ThreadPool {
 public:
  // n_threads >= 1 threads in all, the caller's included (n_threads - 1 workers are started).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;

  // Calls body(begin, end) over contiguous chunks that cover [0, n) exactly once, chunks spread
  // over the threads (the caller runs one), and returns when all are done. body must not throw
  // and must not call run() itself. n <= 0 returns at once.
  void run(int64_t n, const std::function<void(int64_t begin, int64_t end)>& body);

 private:
  struct Workers;  // thread_pool.cpp
  std::unique_ptr<Workers> workers_;
};

}  // namespace awq_edge::cpu
