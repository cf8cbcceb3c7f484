// launch.h: launching a kernel and checking the launch, and a kernel's dynamic shared memory,
// written once for nvcc and for the CPU emulator (cuda/emulator/, tests without a GPU).
//
//   launch("name", kernel, grid, block, shared_bytes, stream, arguments...)
//       = kernel<<<grid, block, shared_bytes, stream>>>(arguments...), then check_launch("name")
//   dynamic_shared<T>()   the block's extern __shared__ memory as T*
#pragma once

#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_runtime.h>

namespace awq_edge::cuda {

// Call right after a launch: a launch error (bad configuration, no kernel image for this GPU) is
// reported by cudaGetLastError, errors inside the kernel at the next synchronisation.
inline void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("[cuda] launching ") + kernel + " failed: " + cudaGetErrorName(status) +
                             ": " + cudaGetErrorString(status));
  }
}

template <typename... Parameters, typename... Arguments>
void launch(const char* name, void (*kernel)(Parameters...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Arguments&&... arguments) {
  static_assert(sizeof...(Parameters) == sizeof...(Arguments), "launch: wrong number of kernel arguments");
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::launch_kernel(name, grid, block, shared_bytes, stream,
                               [kernel, values = std::tuple<std::decay_t<Parameters>...>(
                                            std::forward<Arguments>(arguments)...)] { std::apply(kernel, values); });
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Arguments>(arguments)...);
#endif
  check_launch(name);
}

template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  return static_cast<T*>(cuda_emulator::dynamic_shared_memory());
#else
  extern __shared__ __align__(16) unsigned char dynamic_shared_bytes[];
  return reinterpret_cast<T*>(dynamic_shared_bytes);
#endif
}

}  // namespace awq_edge::cuda
