// cpu_backend.h: the CPU backend, fp32 activations and KV cache, linear layers from linear.h.
#pragma once

#include <memory>
#include <string>

#include "awq_edge/backend.h"
#include "linear.h"

namespace awq_edge::cpu {

// name: what Backend::name() reports ("cpu"; "neon" for the same backend with NEON kernels);
// threads >= 1; level: the kernel level of the linear layers (one kernel_level_supported()).
std::shared_ptr<Backend> create_cpu_backend(const std::string& name, int threads, KernelLevel level);

}  // namespace awq_edge::cpu
