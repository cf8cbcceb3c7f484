// test_thread_pool.cpp: ThreadPool::run calls its body over chunks that cover [0, n) exactly once,
// min(threads, n) of them, and returns only when all are done; on 1, 2, 3 and 8 threads, through
// many runs of alternating sizes back to back, so that workers late for one run meet the next
// (where a worker once could claim a chunk of a run not yet announced). Built and run by
// test_thread_pool.py, also with ThreadSanitizer, which reports any access that the pool's
// protocol leaves unordered. Prints "all checks passed" or the first failure.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "thread_pool.h"

namespace {

int check_runs(int threads, int rounds) {
  awq_edge::cpu::ThreadPool pool(threads);
  const int64_t sizes[] = {2, 1000, 3, 8, 1, 0, 64, 5, 1024, 7};
  std::vector<std::atomic<int>> visits(1024);
  std::atomic<int> calls{0}, bad_ranges{0};
  for (int round = 0; round < rounds; ++round) {
    for (const int64_t n : sizes) {
      for (int64_t i = 0; i < n; ++i) visits[i].store(0, std::memory_order_relaxed);
      calls.store(0, std::memory_order_relaxed);
      pool.run(n, [&](int64_t begin, int64_t end) {
        if (begin < 0 || end > n || begin >= end) bad_ranges.fetch_add(1, std::memory_order_relaxed);
        calls.fetch_add(1, std::memory_order_relaxed);
        for (int64_t i = begin; i < end && i < n; ++i) visits[i].fetch_add(1, std::memory_order_relaxed);
      });
      // what the body did is complete and visible once run() returns
      for (int64_t i = 0; i < n; ++i) {
        if (visits[i].load(std::memory_order_relaxed) != 1) {
          std::printf("FAIL %d threads, round %d, n %lld: index %lld visited %d times\n", threads, round,
                      static_cast<long long>(n), static_cast<long long>(i), visits[i].load());
          return 1;
        }
      }
      const int64_t expected_calls = n <= 0 ? 0 : (threads == 1 || n == 1 ? 1 : (n < threads ? n : threads));
      if (calls.load() != expected_calls || bad_ranges.load() != 0) {
        std::printf("FAIL %d threads, round %d, n %lld: %d calls (expected %lld), %d bad ranges\n", threads, round,
                    static_cast<long long>(n), calls.load(), static_cast<long long>(expected_calls),
                    bad_ranges.load());
        return 1;
      }
    }
  }
  std::printf("ok   %d threads: %d rounds of %zu runs\n", threads, rounds, sizeof(sizes) / sizeof(sizes[0]));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 500;
  for (const int threads : {1, 2, 3, 8}) {
    if (check_runs(threads, rounds) != 0) return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}
