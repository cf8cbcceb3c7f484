// launch.h: launching a kernel and checking the launch, and a kernel's dynamic shared memory,
// written once for nvcc and for the CPU emulator (cuda/emulator/, tests without a GPU).
//
//   launch("name", kernel, grid, block, shared_bytes, stream, arguments...)
//       = kernel<<<grid, block, shared_bytes, stream>>>(arguments...), then check_launch("name");
//       on a stream set_programmatic_launch(stream, true) opted in, a programmatic dependent launch
//   dynamic_shared<T>()   the block's extern __shared__ memory as T*
//   wait_for_previous_kernels()   first thing in every kernel (below)
//
// Programmatic dependent launch (compute capability 9.0+, CUDA 12.3+ inside CUDA graphs): a kernel
// launched with it may be scheduled while the kernel before it on the stream still runs, so that
// the boundary between them (launch, the SMs filling again) overlaps that kernel's tail. Such a
// kernel must not touch memory before griddepcontrol.wait, which returns once the kernels before it
// have finished and their writes are visible (immediately for a kernel launched the usual way).
// Every kernel of this backend calls wait_for_previous_kernels() before anything else, so any of
// them may be launched that way; it then lets the next kernel be scheduled (launch_dependents).
// Off unless the tuning asks for it (KernelConfig::programmatic_launch): not yet run on a GPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

namespace awq_edge::cuda {

__device__ __forceinline__ void wait_for_previous_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The streams whose launches are programmatic dependent launches (none by default: then a launch
// asks an atomic count, not the lock).
class ProgrammaticStreams {
 public:
  void set(cudaStream_t stream, bool on) {
    const std::lock_guard<std::mutex> lock(mutex_);
    streams_.erase(std::remove(streams_.begin(), streams_.end(), stream), streams_.end());
    if (on) streams_.push_back(stream);
    count_.store(static_cast<int>(streams_.size()));
  }
  bool contains(cudaStream_t stream) {
    if (count_.load() == 0) return false;
    const std::lock_guard<std::mutex> lock(mutex_);
    return std::find(streams_.begin(), streams_.end(), stream) != streams_.end();
  }

 private:
  std::mutex mutex_;
  std::vector<cudaStream_t> streams_;
  std::atomic<int> count_{0};
};

inline ProgrammaticStreams& programmatic_streams() {
  static ProgrammaticStreams streams;
  return streams;
}

inline void set_programmatic_launch(cudaStream_t stream, bool on) { programmatic_streams().set(stream, on); }

// Call right after a launch: a launch error (bad configuration, no kernel image for this GPU) is
// reported by cudaGetLastError, errors inside the kernel at the next synchronisation.
inline void check_launch(const char* kernel, cudaError_t status = cudaGetLastError()) {
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
  if (programmatic_streams().contains(stream)) {
    cudaLaunchAttribute attribute[1] = {};
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared_bytes;
    config.stream = stream;
    config.attrs = attribute;
    config.numAttrs = 1;
    const cudaError_t status = cudaLaunchKernelEx(&config, kernel, std::forward<Arguments>(arguments)...);
    cudaGetLastError();  // reported below, not left for the next check
    return check_launch(name, status);
  }
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
