// thread_pool.cpp: the CPU backend's worker threads (see thread_pool.h).
//
// A run() cuts [0, n) into min(size, n) chunks and publishes the job by bumping `generation`;
// the caller and the workers claim chunks from an atomic counter until none is left, and the
// caller returns when all are done. Claiming (rather than chunk t for thread t) matters on a
// busy machine: a worker that the OS has descheduled holds up nothing, the caller takes its
// chunk. A decode step makes hundreds of runs microseconds apart, so an idle worker first spins
// on `generation` for kSpinRounds pause instructions and only then sleeps on the condition
// variable; run() takes the mutex only when someone sleeps.
#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define AWQ_EDGE_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define AWQ_EDGE_CPU_RELAX() asm volatile("yield")
#else
#define AWQ_EDGE_CPU_RELAX() ((void)0)
#endif

namespace awq_edge::cpu {

namespace {

constexpr int kSpinRounds = 2048;  // ~100 us of pause instructions

std::string read_first_line(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// Distinct (package, core) pairs of the CPUs in /sys (offline ones have no topology: skipped);
// 0 when the topology is unreadable.
int count_cores_sysfs() {
  namespace fs = std::filesystem;
  std::set<std::pair<std::string, std::string>> cores;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator("/sys/devices/system/cpu", error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 4 || name.rfind("cpu", 0) != 0 ||
        name.find_first_not_of("0123456789", 3) != std::string::npos) {
      continue;
    }
    const std::string core = read_first_line(entry.path().string() + "/topology/core_id");
    if (!core.empty()) cores.emplace(read_first_line(entry.path().string() + "/topology/physical_package_id"), core);
  }
  return static_cast<int>(cores.size());
}

// Distinct ("physical id", "core id") pairs in /proc/cpuinfo; 0 when it has none.
int count_cores_cpuinfo() {
  std::ifstream file("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, package;
  auto value = [](const std::string& text) { return text.substr(text.find(':') + 1); };
  while (std::getline(file, line)) {
    if (line.rfind("physical id", 0) == 0) package = value(line);
    if (line.rfind("core id", 0) == 0) cores.emplace(package, value(line));
  }
  return static_cast<int>(cores.size());
}

}  // namespace

int physical_core_count() {
  static const int count = [] {
    int cores = count_cores_sysfs();
    if (cores < 1) cores = count_cores_cpuinfo();
    if (cores < 1) cores = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(cores, 1);
  }();
  return count;
}

struct ThreadPool::Workers {
  int size = 1;
  std::vector<std::thread> threads;

  // The current job; written by run() after `next_chunk` has closed the previous job and before
  // `next_chunk` and `generation` announce this one. Atomics (relaxed) because a worker late for
  // the previous job may still read them while run() writes; it then finds `next_chunk` closed.
  std::atomic<const std::function<void(int64_t, int64_t)>*> body{nullptr};
  std::atomic<int64_t> n{0};
  std::atomic<uint32_t> chunks{0};

  // (job number << 32) | the next unclaimed chunk: a thread that wakes late finds another job
  // number and claims nothing.
  std::atomic<uint64_t> next_chunk{0};
  std::atomic<uint32_t> done_chunks{0};
  std::atomic<uint64_t> generation{0};  // the job number
  std::atomic<int> sleeping{0};         // workers waiting on `wake`
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::condition_variable wake;

  // Claims and runs chunks of job `job` until none is left. A claim of job `job` read from
  // `next_chunk` comes after run() wrote the job's body, n and chunks.
  void work(uint64_t job) {
    uint64_t claim = next_chunk.load();
    for (;;) {
      const uint32_t count = chunks.load(std::memory_order_relaxed);
      if ((claim >> 32) != (job & 0xFFFFFFFFu) || (claim & 0xFFFFFFFFu) >= count) return;
      if (!next_chunk.compare_exchange_weak(claim, claim + 1)) continue;  // `claim` reloaded
      const int64_t index = static_cast<int64_t>(claim & 0xFFFFFFFFu);
      const int64_t size = n.load(std::memory_order_relaxed);
      const int64_t begin = size * index / count;
      const int64_t end = size * (index + 1) / count;
      if (begin < end) (*body.load(std::memory_order_relaxed))(begin, end);
      done_chunks.fetch_add(1, std::memory_order_release);
      claim = next_chunk.load();
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t current = generation.load(std::memory_order_acquire);
      for (int round = 0; current == seen && round < kSpinRounds; ++round) {
        AWQ_EDGE_CPU_RELAX();
        current = generation.load(std::memory_order_acquire);
      }
      if (current == seen) {
        std::unique_lock<std::mutex> lock(mutex);
        sleeping.fetch_add(1);
        wake.wait(lock, [&] { return generation.load() != seen || stop.load(); });
        sleeping.fetch_sub(1);
        current = generation.load();
      }
      if (stop.load()) return;
      seen = current;
      work(seen);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : workers_(std::make_unique<Workers>()) {
  workers_->size = std::max(n_threads, 1);
  for (int index = 1; index < workers_->size; ++index) {
    workers_->threads.emplace_back([this] { workers_->worker_loop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(workers_->mutex);
    workers_->stop.store(true);
    workers_->generation.fetch_add(1);
  }
  workers_->wake.notify_all();
  for (std::thread& thread : workers_->threads) thread.join();
}

int ThreadPool::size() const { return workers_->size; }

void ThreadPool::run(int64_t n, const std::function<void(int64_t begin, int64_t end)>& body) {
  if (n <= 0) return;
  Workers& w = *workers_;
  if (w.size == 1 || n == 1) {
    body(0, n);
    return;
  }
  const uint64_t job = w.generation.load() + 1;
  const auto chunks = static_cast<uint32_t>(std::min<int64_t>(w.size, n));
  // Close the previous job first: a worker still holding a claim of it must not claim chunk
  // `chunks` of it once this job's larger `chunks` is written (it would run a chunk of this job
  // unannounced, and count it twice).
  w.next_chunk.store(((job & 0xFFFFFFFFu) << 32) | 0xFFFFFFFFu);
  w.body.store(&body, std::memory_order_relaxed);
  w.n.store(n, std::memory_order_relaxed);
  w.chunks.store(chunks, std::memory_order_relaxed);
  w.done_chunks.store(0);
  w.next_chunk.store((job & 0xFFFFFFFFu) << 32);
  w.generation.store(job);  // seq_cst, paired with the sleeper's `sleeping` increment
  if (w.sleeping.load() > 0) {
    std::lock_guard<std::mutex> lock(w.mutex);  // a worker between its check and its wait
    w.wake.notify_all();
  }
  w.work(job);  // the caller claims chunks too, so a descheduled worker delays nothing
  for (int round = 0; w.done_chunks.load(std::memory_order_acquire) != chunks; ++round) {
    if (round < kSpinRounds) {
      AWQ_EDGE_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace awq_edge::cpu
