// launch_check.h: turning a failed kernel launch into an exception that names the kernel.
#pragma once

#include <stdexcept>
#include <string>

#include <cuda_runtime.h>

namespace awq_edge::cuda {

// Call right after a <<<...>>> launch: a launch error (bad configuration, no kernel image for this
// GPU) is reported by cudaGetLastError, errors inside the kernel at the next synchronisation.
inline void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("[cuda] launching ") + kernel + " failed: " + cudaGetErrorName(status) +
                             ": " + cudaGetErrorString(status));
  }
}

}  // namespace awq_edge::cuda
