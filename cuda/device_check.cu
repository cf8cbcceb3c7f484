// device_check.cu: can this build run on the machine's GPU? (cuda_backend.h: device_available)
#include <string>

#include <cuda_runtime.h>

#include "cuda_backend.h"

#ifndef AWQ_EDGE_CUDA_ARCHITECTURES
#define AWQ_EDGE_CUDA_ARCHITECTURES "unknown"
#endif

namespace awq_edge::cuda {
namespace {

__global__ void probe_kernel() {}

std::string runtime_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

}  // namespace

bool device_available(std::string* reason) {
  auto fail = [&](const std::string& why) {
    if (reason != nullptr) *reason = why;
    return false;
  };
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorInsufficientDriver) {
    return fail("the NVIDIA driver is missing or older than this build's CUDA runtime " + runtime_version() +
                " (install a driver for CUDA " + runtime_version() + " or newer)");
  }
  if (status == cudaErrorNoDevice || (status == cudaSuccess && count == 0)) return fail("no NVIDIA GPU found");
  if (status != cudaSuccess) {
    return fail(std::string("the CUDA runtime cannot start: ") + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
  cudaDeviceProp prop{};
  if (const cudaError_t s = cudaGetDeviceProperties(&prop, 0); s != cudaSuccess) {
    return fail(std::string("cannot query GPU 0: ") + cudaGetErrorString(s));
  }
  if (prop.major < 8) {
    return fail(std::string("GPU 0 (") + prop.name + ") has compute capability " + std::to_string(prop.major) + "." +
                std::to_string(prop.minor) + "; the CUDA backend needs 8.0 or newer (tensor-core mma.m16n8k16)");
  }
  cudaFuncAttributes attributes{};
  if (const cudaError_t s = cudaFuncGetAttributes(&attributes, probe_kernel); s != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of the failed lookup
    return fail(std::string("this build has no kernels for GPU 0 (") + prop.name + ", sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor) + "): it was compiled for CUDA architectures " AWQ_EDGE_CUDA_ARCHITECTURES
                "; rebuild with -DCMAKE_CUDA_ARCHITECTURES=\"" AWQ_EDGE_CUDA_ARCHITECTURES ";" +
                std::to_string(prop.major) + std::to_string(prop.minor) + "\" (" + cudaGetErrorString(s) + ")");
  }
  if (reason != nullptr) reason->clear();
  return true;
}

}  // namespace awq_edge::cuda
