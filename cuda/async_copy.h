// async_copy.h: cp.async (global -> shared memory copies that complete in groups, sm_80+), written
// once for nvcc and for the CPU emulator (cuda/emulator/, where a copy is carried out only when
// the thread waits for its group, so reading shared memory too early shows as a wrong result).
//
//   copy16_async(shared, global, valid)  16 bytes; valid == false fills the 16 bytes with zeros
//   commit_copies()                      closes the thread's current group of copies
//   wait_copies<N>()                     waits until at most N of the thread's groups are pending
// A thread sees only its own completed copies: the others' need a barrier after their wait.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace awq_edge::cuda {

__device__ __forceinline__ void copy16_async(void* shared, const void* global, bool valid) {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::async_copy(shared, global, 16, valid ? 16 : 0);
#else
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0));
#endif
}

__device__ __forceinline__ void commit_copies() {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int N>
__device__ __forceinline__ void wait_copies() {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

}  // namespace awq_edge::cuda
