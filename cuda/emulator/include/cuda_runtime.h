// cuda_runtime.h (emulator): what cuda/*.cu use of CUDA C++ and of the CUDA runtime API, for
// compiling them as host C++ that runs on the emulator (../emulator.h). Found before the real
// header only in builds with -DAWQ_EDGE_CUDA_EMULATOR=ON (tests); never installed.
//
//   device code   __global__ / __device__ / __shared__ ..., threadIdx & co., __syncthreads,
//                 __shfl_xor_sync, __ldg / __ldcs / __ldcg, atomicAdd, __threadfence, the vector
//                 types, math built-ins
//   runtime API   device memory is host memory, every stream runs its work at once on the
//                 calling thread (in order, so stream semantics hold), stream capture records
//                 kernel launches and copies into a graph that cudaGraphLaunch replays;
//                 one emulated device: compute capability 8.7 with 16 SMs and 16 GiB (as a Jetson
//                 AGX Orin). For tests of the backend's checks and errors, the environment changes it
//                 (read at each call):
//                   AWQ_EDGE_CUDA_EMULATOR_SMS=N          N SMs
//                   AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB=M   M MiB of device memory (M may have a fraction)
//                   AWQ_EDGE_CUDA_EMULATOR_DEVICE=        none        cudaGetDeviceCount: no device
//                                                         old-driver  cudaGetDeviceCount: driver too old
//                                                         sm_XY       compute capability X.Y
//                                                         no-kernels  cudaFuncGetAttributes: no kernel
//                                                                     image for this device
//                                                         integrated  a GPU sharing the CPU's DRAM
//                                                                     (Jetson: prop.integrated = 1)
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <type_traits>

#include "../emulator.h"

#define CUDART_VERSION 13000

// ------------------------------------------------------------------------------- device code
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define threadIdx (::awq_edge::cuda_emulator::thread_index())
#define blockIdx (::awq_edge::cuda_emulator::block_index())
#define blockDim (::awq_edge::cuda_emulator::block_dim())
#define gridDim (::awq_edge::cuda_emulator::grid_dim())

struct alignas(8) uint2 { uint32_t x, y; };
struct alignas(16) uint4 { uint32_t x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }

inline void __syncthreads() { awq_edge::cuda_emulator::sync_block(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "__shfl_xor_sync of a 4- or 8-byte value");
  if (mask != 0xFFFFFFFFu || width != 32) {
    throw std::logic_error("[cuda emulator] __shfl_xor_sync: only the full mask and width 32 are emulated");
  }
  T all[32];
  awq_edge::cuda_emulator::warp_exchange("__shfl_xor_sync", &value, sizeof(T), all);
  return all[awq_edge::cuda_emulator::lane_index() ^ (static_cast<unsigned>(lane_mask) & 31u)];
}

template <typename T>
T __ldg(const T* p) { return *p; }
template <typename T>
T __ldcs(const T* p) { return *p; }
template <typename T>
T __ldcg(const T* p) { return *p; }

// Blocks run one at a time and a thread switches only at a barrier or a warp collective, so a
// fence has nothing to order. The atomic is a relaxed one (as CUDA's) so that ThreadSanitizer
// (race_detection.h) sees an atomic and not a race between the threads that use it.
inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline void __threadfence() {}

inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// ------------------------------------------------------------------------------ runtime API
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};

struct CUstream_st;
struct CUgraph_st;
struct CUgraphExec_st;
using cudaStream_t = CUstream_st*;
using cudaGraph_t = CUgraph_st*;
using cudaGraphExec_t = CUgraphExec_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor;
  int multiProcessorCount;
  int integrated;  // 1: the GPU shares DRAM with the CPU (Jetson)
};
struct cudaFuncAttributes {
  int maxThreadsPerBlock;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);

cudaError_t cudaMalloc(void** pointer, size_t bytes);
cudaError_t cudaFree(void* pointer);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
// Pinned host memory mapped into the GPU's address space (the only flag the backend uses). With
// unified addressing the device pointer is the host pointer. On the emulated integrated GPU it
// counts against the device memory, as on a Jetson, where both are the same DRAM.
constexpr unsigned int cudaHostAllocMapped = 2;
cudaError_t cudaHostAlloc(void** pointer, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void* pointer);
cudaError_t cudaHostGetDevicePointer(void** device_pointer, void* host_pointer, unsigned int flags);
cudaError_t cudaMemset(void* pointer, int value, size_t bytes);
cudaError_t cudaMemcpy(void* destination, const void* source, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* destination, const void* source, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy2DAsync(void* destination, size_t destination_pitch, const void* source, size_t source_pitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

namespace awq_edge::cuda_emulator {
// cudaFuncGetAttributes' answer for every kernel (AWQ_EDGE_CUDA_EMULATOR_DEVICE=no-kernels: none).
cudaError_t kernel_image_status();
}  // namespace awq_edge::cuda_emulator

template <typename Kernel>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, Kernel*) {
  attributes->maxThreadsPerBlock = 1024;
  return awq_edge::cuda_emulator::kernel_image_status();
}

namespace awq_edge::cuda_emulator {
// kernel<<<grid, block, shared, stream>>>(...): runs it now, or records it when `stream` is being
// captured; a refused configuration becomes the error cudaGetLastError returns.
void launch_kernel(const char* name, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                   std::function<void()> kernel);
}  // namespace awq_edge::cuda_emulator
