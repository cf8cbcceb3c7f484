// emulator.h: CUDA's execution model on the CPU, so that the CUDA backend's own kernels and host
// code (cuda/*.cu, compiled as host C++ against include/cuda_runtime.h and include/cuda_fp16.h)
// run in tests on machines without a GPU. It exists to find logic errors (indexing, reductions,
// barriers, fragment layouts, graph recording) early; it says nothing about speed, and timing,
// memory ordering between blocks and register limits are not modelled (inside a block, a
// ThreadSanitizer build checks the ordering: races, below).
//
//   launch      the grid's blocks run one after another on the calling thread; a block's threads
//               are fibers (own stacks, cooperative switching) that run until they reach a
//               barrier or finish, first to last (AWQ_EDGE_CUDA_EMULATOR_ORDER=reverse: threads
//               and blocks last to first, so that a missing barrier, or a reliance on which block
//               runs first, shows as a different result in one order or the other)
//   barriers    __syncthreads: every live thread of the block; warp collectives (__shfl_xor_sync,
//               mma.sync): the 32 lanes of a warp (threads 32w .. 32w+31), which must all reach
//               the same collective (a lane that exited or waits elsewhere is reported, as are
//               deadlocks)
//   memory      "device" memory is host memory; __shared__ variables are static (one block runs
//               at a time); dynamic shared memory is filled with 0xFF (NaN as floats) before every
//               block, so reading it before writing shows
//   limits      the launch limits of compute capability 8.x/9.0 are checked (block <= 1024
//               threads, grid y/z <= 65535, dynamic shared memory <= 48 KiB without opt-in)
//   log         AWQ_EDGE_CUDA_EMULATOR_LAUNCH_LOG=FILE appends a line per kernel run (name, grid,
//               block), eager or replayed from a graph: tests count a decode step's kernels with it
//   races       built with -fsanitize=thread, ThreadSanitizer reports two threads of a block that
//               touch the same bytes with no barrier between them (race_detection.h)
//
//   warp_exchange(op, mine, bytes, all): the primitive under the warp collectives: every lane
//   gives `bytes` bytes and receives all 32 lanes' contributions (lane order) in `all`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace awq_edge::cuda_emulator {

constexpr int kWarpSize = 32;

// Inside a kernel: the calling thread's coordinates.
const dim3& thread_index();
const dim3& block_index();
const dim3& block_dim();
const dim3& grid_dim();
// The calling thread's lane: its linear index in the block modulo 32.
unsigned lane_index();

// __syncthreads.
void sync_block();

// A collective of the calling thread's warp (see above); `op` names it in error messages.
void warp_exchange(const char* op, const void* mine, size_t bytes, void* all);

// The block's dynamic shared memory (extern __shared__), as large as the launch asked for.
void* dynamic_shared_memory();

// cp.async: the calling thread's copy of `bytes` bytes, of which the first `source_bytes` come from
// `source` and the rest are zeros, joins its open group; async_commit closes the group; async_wait(n)
// carries out the thread's oldest groups until at most n are pending. The copies happen only then,
// so a thread that reads the destination before waiting reads what was there before.
void async_copy(void* destination, const void* source, size_t bytes, size_t source_bytes);
void async_commit();
void async_wait(int pending);

// Why hardware would refuse to launch this configuration, or an empty string.
std::string launch_refusal(dim3 grid, dim3 block, size_t dynamic_shared_bytes);

// Runs `kernel` (one thread's work, called once per thread) over the grid, whose configuration
// launch_refusal accepted. Errors found while running (deadlock, divergent warp collective, an
// exception in a thread) throw std::runtime_error naming the kernel, the block and the threads.
void run_grid(const char* name, dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& kernel);

}  // namespace awq_edge::cuda_emulator
