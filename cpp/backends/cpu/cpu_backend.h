// cpu_backend.h: the CPU backend, fp32 activations and KV cache, linear layers from linear.h.
#pragma once

#include <memory>

#include "awq_edge/backend.h"
#include "linear.h"

namespace awq_edge::cpu {

// threads >= 1; level: the kernel level of the linear layers (best_kernel_level() or lower).
std::shared_ptr<Backend> create_cpu_backend(int threads, KernelLevel level);

}  // namespace awq_edge::cpu
