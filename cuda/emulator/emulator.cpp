// emulator.cpp: the scheduler behind emulator.h. One block at a time: every thread (a Fiber) runs
// until it waits at a barrier or finishes; when none can run, a warp whose live lanes all wait at
// the same warp collective is released, else a block whose live threads all wait at __syncthreads,
// else the block is stuck and the states of its threads are reported. A fiber that finishes its
// thread waits at the top of thread_entry for the next block it runs; fibers that a failed block
// left mid-kernel are rewound. Under ThreadSanitizer the scheduler tells TSan what orders the
// threads' accesses (race_detection.h).
#include "emulator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "fibers.h"
#include "race_detection.h"

namespace awq_edge::cuda_emulator {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // a thread's stack (kernels keep their arrays on it)
constexpr size_t kMaxDynamicShared = 48 * 1024;
constexpr unsigned kMaxThreads = 1024;
constexpr size_t kMaxExchangeBytes = 64;    // per lane and warp collective

enum class State { Runnable, AtWarpCollective, AtBlockBarrier, Finished };

struct AsyncCopy {
  void* destination;
  const void* source;
  size_t bytes, source_bytes;
};

struct Thread {
  Fiber* fiber = nullptr;
  dim3 index;
  State state = State::Runnable;
  const char* collective = nullptr;  // the warp collective it waits at
  std::vector<AsyncCopy> open_copies;                 // cp.async not yet committed
  std::vector<std::vector<AsyncCopy>> pending_groups; // committed, oldest first, not yet waited for
  unsigned barriers = 0;                              // __syncthreads passed in this block
};

// The emulation of one launch (one at a time: launches from several host threads take turns).
struct Launch {
  const char* name = "";
  dim3 grid, block, block_index;
  const std::function<void()>* kernel = nullptr;
  std::vector<Thread> threads;
  Thread* current = nullptr;
  std::vector<unsigned char> shared;
  std::vector<unsigned char> exchange;  // warp_exchange slots: (warps, 32 lanes, kMaxExchangeBytes)
  std::exception_ptr error;             // thrown inside a thread: rethrown by the scheduler
  bool reverse = false;                 // run the threads last to first (AWQ_EDGE_CUDA_EMULATOR_ORDER)
};

std::mutex launch_mutex;
Launch* active = nullptr;
std::vector<std::unique_ptr<Fiber>> fiber_pool;  // reused by every launch (guarded by launch_mutex)

// Addresses that only name TSan synchronisation (race_detection.h): the scheduler releases
// block_start before a block's threads run, they release block_end when they finish or wait, and
// barrier k of a block goes through barrier_keys[k % 2].
const char block_start_key = 0, block_end_key = 0;
const char barrier_keys[2] = {};

Launch& running(const char* what) {
  if (active == nullptr || active->current == nullptr) {
    throw std::logic_error(std::string("[cuda emulator] ") + what + " called outside a kernel");
  }
  return *active;
}

void thread_entry(void*) {
  for (;;) {
    race_detection::acquire(&block_start_key);
    Launch* launch = nullptr;
    const std::function<void()>* kernel = nullptr;
    {
      race_detection::Unobserved unobserved;
      launch = active;
      kernel = launch->kernel;
    }
    try {
      (*kernel)();
    } catch (...) {
      race_detection::Unobserved unobserved;
      launch->error = std::current_exception();
    }
    race_detection::release(&block_end_key);
    Fiber* fiber = nullptr;
    {
      race_detection::Unobserved unobserved;
      launch->current->state = State::Finished;
      fiber = launch->current->fiber;
    }
    fiber->suspend();  // resumed when the fiber runs a thread of another block
  }
}

std::string describe(dim3 d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

[[noreturn]] void fail(const Launch& launch, const std::string& what) {
  throw std::runtime_error("[cuda emulator] kernel " + std::string(launch.name) + ", block " +
                           describe(launch.block_index) + ": " + what);
}

std::string state_name(const Thread& t) {
  switch (t.state) {
    case State::Runnable: return "running";
    case State::AtWarpCollective: return std::string("at ") + t.collective;
    case State::AtBlockBarrier: return "at __syncthreads";
    case State::Finished: return "finished";
  }
  return "?";
}

// "threads 0-31 at __shfl_xor_sync; threads 32-63 at __syncthreads"
std::string states(const Launch& launch, size_t first, size_t end) {
  std::string text;
  size_t run_start = first;
  int runs = 0;
  for (size_t i = first + 1; i <= end; ++i) {
    if (i == end || state_name(launch.threads[i]) != state_name(launch.threads[run_start])) {
      if (++runs > 8) return text + "; ...";
      if (!text.empty()) text += "; ";
      text += "threads " + std::to_string(run_start) + (i - 1 > run_start ? "-" + std::to_string(i - 1) : "") + " " +
              state_name(launch.threads[run_start]);
      run_start = i;
    }
  }
  return text;
}

// Releases the warps whose live lanes all wait at one collective; returns whether any was.
bool release_warps(Launch& launch) {
  bool released = false;
  const size_t count = launch.threads.size();
  for (size_t first = 0; first < count; first += kWarpSize) {
    const size_t end = std::min(count, first + kWarpSize);
    size_t waiting = 0;
    const char* op = nullptr;
    for (size_t i = first; i < end; ++i) {
      const Thread& t = launch.threads[i];
      if (t.state != State::AtWarpCollective) continue;
      if (op != nullptr && std::strcmp(op, t.collective) != 0) {
        fail(launch, "the lanes of warp " + std::to_string(first / kWarpSize) +
                         " wait at different collectives: " + states(launch, first, end));
      }
      op = t.collective;
      ++waiting;
    }
    if (waiting == 0) continue;
    if (waiting != end - first) {  // full-mask collectives need every lane of the warp
      fail(launch, "warp " + std::to_string(first / kWarpSize) + " is not converged at " + op + ": " +
                       states(launch, first, end));
    }
    for (size_t i = first; i < end; ++i) launch.threads[i].state = State::Runnable;
    released = true;
  }
  return released;
}

bool release_block(Launch& launch) {
  bool any = false, finished = false;
  for (const Thread& t : launch.threads) {
    if (t.state == State::AtWarpCollective) return false;
    any |= t.state == State::AtBlockBarrier;
    finished |= t.state == State::Finished;
  }
  if (!any) return false;
  if (finished) {  // __syncthreads must be reached by every thread of the block (CUDA C++ guide)
    fail(launch, "__syncthreads is not reached by every thread: " + states(launch, 0, launch.threads.size()));
  }
  for (Thread& t : launch.threads) {
    if (t.state == State::AtBlockBarrier) t.state = State::Runnable;
  }
  return true;
}

void run_block(Launch& launch, size_t dynamic_shared_bytes) {
  std::memset(launch.shared.data(), 0xFF, dynamic_shared_bytes);
  for (Thread& t : launch.threads) {
    t.state = State::Runnable;
    t.open_copies.clear();
    t.pending_groups.clear();
    t.barriers = 0;
  }
  race_detection::release(&block_start_key);
  for (;;) {
    bool ran = false;
    for (size_t i = 0; i < launch.threads.size(); ++i) {
      Thread& t = launch.threads[launch.reverse ? launch.threads.size() - 1 - i : i];
      if (t.state != State::Runnable) continue;
      launch.current = &t;
      t.fiber->resume();
      launch.current = nullptr;
      if (launch.error) std::rethrow_exception(launch.error);
      ran = true;
    }
    if (ran) continue;
    bool finished = true;
    for (const Thread& t : launch.threads) finished &= t.state == State::Finished;
    if (finished) {
      race_detection::acquire(&block_end_key);
      return;
    }
    if (release_warps(launch) || release_block(launch)) continue;
    fail(launch, "no thread can go on (a barrier that not every thread reaches): " +
                     states(launch, 0, launch.threads.size()));
  }
}

void wait(State state, const char* collective) {
  // what the thread did so far is ordered before the scheduler's next step, should the block fail
  // here (the scheduler acquires block_end_key only at the end of a block or of a failed launch).
  // No Unobserved scope stays open across the switch: a fiber rewound after a failed block must
  // not keep ignoring its accesses.
  race_detection::release(&block_end_key);
  Fiber* fiber = nullptr;
  {
    race_detection::Unobserved unobserved;
    Thread& t = *active->current;
    t.state = state;
    t.collective = collective;
    fiber = t.fiber;
  }
  fiber->suspend();
}

}  // namespace

// (What the scheduler wrote before the block started, such as a thread's index, may be read
// observed; which thread runs, and the threads' states, are the scheduler's business.)
const dim3& thread_index() {
  race_detection::Unobserved unobserved;
  return running("threadIdx").current->index;
}
const dim3& block_index() {
  race_detection::Unobserved unobserved;
  return running("blockIdx").block_index;
}
const dim3& block_dim() {
  race_detection::Unobserved unobserved;
  return running("blockDim").block;
}
const dim3& grid_dim() {
  race_detection::Unobserved unobserved;
  return running("gridDim").grid;
}
unsigned lane_index() {
  race_detection::Unobserved unobserved;
  const Launch& launch = running("lane index");
  return static_cast<unsigned>((launch.current - launch.threads.data()) % kWarpSize);
}

void sync_block() {
  const char* key = nullptr;
  {
    race_detection::Unobserved unobserved;
    key = &barrier_keys[running("__syncthreads").current->barriers++ % 2];
  }
  race_detection::release(key);
  wait(State::AtBlockBarrier, nullptr);
  race_detection::acquire(key);
}

void warp_exchange(const char* op, const void* mine, size_t bytes, void* all) {
  unsigned char* slots = nullptr;
  {
    race_detection::Unobserved unobserved;  // the slots are the emulator's; a collective orders no memory
    Launch& launch = running(op);
    const size_t thread = static_cast<size_t>(launch.current - launch.threads.data());
    const size_t warp = thread / kWarpSize, lane = thread % kWarpSize;
    if (bytes > kMaxExchangeBytes) throw std::logic_error(std::string("[cuda emulator] ") + op + ": too many bytes per lane");
    slots = launch.exchange.data() + warp * kWarpSize * kMaxExchangeBytes;
    std::memcpy(slots + lane * kMaxExchangeBytes, mine, bytes);
  }
  wait(State::AtWarpCollective, op);   // every lane has written
  {
    race_detection::Unobserved unobserved;
    for (size_t l = 0; l < kWarpSize; ++l) {
      std::memcpy(static_cast<unsigned char*>(all) + l * bytes, slots + l * kMaxExchangeBytes, bytes);
    }
  }
  wait(State::AtWarpCollective, op);   // every lane has read: the slots may be reused
}

void* dynamic_shared_memory() {
  race_detection::Unobserved unobserved;
  return running("dynamic shared memory").shared.data();
}

void async_copy(void* destination, const void* source, size_t bytes, size_t source_bytes) {
  race_detection::Unobserved unobserved;
  running("cp.async").current->open_copies.push_back({destination, source, bytes, std::min(bytes, source_bytes)});
}

void async_commit() {
  race_detection::Unobserved unobserved;
  Thread& t = *running("cp.async.commit_group").current;
  t.pending_groups.push_back(std::move(t.open_copies));
  t.open_copies.clear();
}

void async_wait(int pending) {
  for (;;) {
    std::vector<AsyncCopy> oldest;  // the oldest pending group, moved out: its copies land now
    {
      race_detection::Unobserved unobserved;
      Thread& t = *running("cp.async.wait_group").current;
      if (t.pending_groups.size() <= static_cast<size_t>(std::max(pending, 0))) return;
      oldest = std::move(t.pending_groups.front());
      t.pending_groups.erase(t.pending_groups.begin());
    }
    for (const AsyncCopy& c : oldest) {  // the thread's own accesses, observed
      std::memcpy(c.destination, c.source, c.source_bytes);
      std::memset(static_cast<char*>(c.destination) + c.source_bytes, 0, c.bytes - c.source_bytes);
    }
  }
}

std::string launch_refusal(dim3 grid, dim3 block, size_t dynamic_shared_bytes) {
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64) {
    return "block " + describe(block) + " is not 1..1024 threads (x, y <= 1024, z <= 64)";
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7FFFFFFFu) {
    return "grid " + describe(grid) + " is empty or too large (y, z <= 65535)";
  }
  if (dynamic_shared_bytes > kMaxDynamicShared) {
    return std::to_string(dynamic_shared_bytes) + " bytes of dynamic shared memory (more than 48 KiB needs "
           "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))";
  }
  return "";
}

// AWQ_EDGE_CUDA_EMULATOR_LAUNCH_LOG=FILE: every kernel that runs (eagerly or replayed from a graph)
// appends its name and grid as one line, so that tests can count the kernels of a decode step.
static void log_launch(const char* name, dim3 grid, dim3 block) {
  static std::FILE* const log = [] {
    const char* path = std::getenv("AWQ_EDGE_CUDA_EMULATOR_LAUNCH_LOG");
    return path != nullptr && *path != '\0' ? std::fopen(path, "a") : nullptr;
  }();
  if (log == nullptr) return;
  std::fprintf(log, "%s grid=%s block=%s\n", name, describe(grid).c_str(), describe(block).c_str());
  std::fflush(log);
}

void run_grid(const char* name, dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& kernel) {
  const std::string refused = launch_refusal(grid, block, dynamic_shared_bytes);
  if (!refused.empty()) throw std::logic_error(std::string("[cuda emulator] ") + name + ": " + refused);
  log_launch(name, grid, block);
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  std::lock_guard<std::mutex> lock(launch_mutex);
  Launch launch;
  launch.name = name;
  launch.grid = grid;
  launch.block = block;
  launch.kernel = &kernel;
  const char* order = std::getenv("AWQ_EDGE_CUDA_EMULATOR_ORDER");
  launch.reverse = order != nullptr && std::string(order) == "reverse";
  launch.shared.resize(std::max<size_t>(dynamic_shared_bytes, 1));
  launch.threads.resize(static_cast<size_t>(threads));
  launch.exchange.resize((launch.threads.size() + kWarpSize - 1) / kWarpSize * kWarpSize * kMaxExchangeBytes);
  while (fiber_pool.size() < launch.threads.size()) {
    fiber_pool.push_back(std::make_unique<Fiber>(kStackBytes, &thread_entry, nullptr));
  }
  for (size_t i = 0; i < launch.threads.size(); ++i) {
    Thread& t = launch.threads[i];
    t.index = dim3(static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
                   static_cast<unsigned>(i / (static_cast<size_t>(block.x) * block.y)));
    t.fiber = fiber_pool[i].get();
  }
  struct Activate {
    explicit Activate(Launch* l) { active = l; }
    ~Activate() { active = nullptr; }
  } activate(&launch);
  // reverse: the blocks too run last to first, so that a kernel cannot rely on block order either
  const auto ordered = [&](unsigned i, unsigned n) { return launch.reverse ? n - 1 - i : i; };
  try {
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          launch.block_index = dim3(ordered(x, grid.x), ordered(y, grid.y), ordered(z, grid.z));
          run_block(launch, dynamic_shared_bytes);
        }
      }
    }
  } catch (...) {  // threads of the failed block may be stopped inside the kernel: rewind every fiber
    race_detection::acquire(&block_end_key);
    for (const std::unique_ptr<Fiber>& fiber : fiber_pool) fiber->restart();
    throw;
  }
}

}  // namespace awq_edge::cuda_emulator
