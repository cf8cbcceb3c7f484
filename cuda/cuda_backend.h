// cuda_backend.h: the CUDA backend (NVIDIA GPUs of compute capability 8.0 or newer: Jetson Orin,
// Ampere, Ada, Hopper), registered as "cuda" in cpp/backends/registry.cpp.
#pragma once

#include <memory>
#include <string>

#include "awq_edge/backend.h"
#include "awq_edge/backends.h"

namespace awq_edge::cuda {

// Whether this build can run on a GPU of this machine; when not, `reason` says why (no driver, no
// GPU, compute capability below 8.0, no kernels compiled for its architecture).
bool device_available(std::string* reason);

// The backend on GPU 0 (choose another with CUDA_VISIBLE_DEVICES). options.kernels must be
// "auto". Throws std::runtime_error with the reason when no usable GPU is present.
std::shared_ptr<Backend> create_cuda_backend(const BackendOptions& options);

}  // namespace awq_edge::cuda
