// registry.cpp: the backends compiled into this build, by name. A backend folder's CMake
// option defines AWQ_EDGE_WITH_<NAME> for this file and links the backend's factory.
#include <algorithm>
#include <stdexcept>

#include "awq_edge/backends.h"
#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"
#if AWQ_EDGE_WITH_CUDA
#include "cuda_backend.h"
#endif

namespace awq_edge {
namespace {

cpu::KernelLevel cpu_kernel_level(const std::string& kernels) {
  const cpu::KernelLevel best = cpu::best_kernel_level();
  if (kernels == "auto") return best;
  if (kernels == "reference") return cpu::KernelLevel::Reference;
  if (kernels == "avx2") {
    if (best == cpu::KernelLevel::Reference) {
      throw std::runtime_error("[Backend] kernels='avx2' needs a CPU with AVX2, FMA and F16C; "
                               "this one lacks them (use kernels='auto')");
    }
    return cpu::KernelLevel::AVX2;
  }
  if (kernels == "avx512") {
    if (best != cpu::KernelLevel::AVX512) {
      throw std::runtime_error("[Backend] kernels='avx512' needs a CPU with AVX-512 F, BW, VL and VNNI (and AVX2, "
                               "FMA, F16C); this one lacks them (use kernels='auto')");
    }
    return cpu::KernelLevel::AVX512;
  }
  throw std::invalid_argument("[Backend] unknown CPU kernels '" + kernels +
                              "' (choose auto, reference, avx2 or avx512)");
}

#if AWQ_EDGE_WITH_NEON
// The NEON backend's kernels: "auto" or "neon" (the faithful path: neon-fp16 where the CPU has FP16
// arithmetic, else neon-fp32), "neon-int8" (the fast path: neon-i8mm or neon-dot), one level by
// name, or "reference".
cpu::KernelLevel neon_kernel_level(const std::string& kernels) {
  if (kernels == "auto" || kernels == "neon") return cpu::best_kernel_level();
  if (kernels == "neon-int8") {
    const cpu::KernelLevel best = cpu::best_int8_kernel_level();
    if (best == cpu::KernelLevel::Reference) {
      throw std::runtime_error("[Backend] kernels='neon-int8' needs a CPU with the DotProd extension (SDOT); "
                               "this one lacks it (use kernels='neon')");
    }
    return best;
  }
  for (cpu::KernelLevel level : {cpu::KernelLevel::Reference, cpu::KernelLevel::NeonFp32, cpu::KernelLevel::NeonFp16,
                                 cpu::KernelLevel::NeonDot, cpu::KernelLevel::NeonI8mm}) {
    if (kernels != cpu::kernel_level_name(level)) continue;
    if (!cpu::kernel_level_supported(level)) {
      throw std::runtime_error("[Backend] kernels='" + kernels + "' is not supported by this CPU (use kernels='neon')");
    }
    return level;
  }
  throw std::invalid_argument("[Backend] unknown NEON kernels '" + kernels +
                              "' (choose auto, neon, neon-int8, neon-fp32, neon-fp16, neon-dot, neon-i8mm or reference)");
}
#endif

int thread_count(const BackendOptions& options) {
  if (options.threads < 0) {
    throw std::invalid_argument("[Backend] threads must be >= 0 (0 = one per physical core), got " +
                                std::to_string(options.threads));
  }
  return options.threads > 0 ? options.threads : cpu::physical_core_count();
}

std::shared_ptr<Backend> create_cpu(const BackendOptions& options) {
  return cpu::create_cpu_backend("cpu", thread_count(options), cpu_kernel_level(options.kernels));
}

}  // namespace

std::vector<std::string> compiled_backends() {
  std::vector<std::string> names;
#if AWQ_EDGE_WITH_CUDA
  names.push_back("cuda");
#endif
#if AWQ_EDGE_WITH_NEON
  names.push_back("neon");
#endif
  names.push_back("cpu");
  return names;
}

bool backend_available(const std::string& name, std::string* reason) {
#if AWQ_EDGE_WITH_CUDA
  if (name == "cuda") return cuda::device_available(reason);
#endif
  const std::vector<std::string> compiled = compiled_backends();
  if (std::find(compiled.begin(), compiled.end(), name) != compiled.end()) {
    if (reason != nullptr) reason->clear();
    return true;
  }
  if (reason != nullptr) *reason = "backend '" + name + "' is not part of this build";
  return false;
}

std::shared_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options) {
#if AWQ_EDGE_WITH_CUDA
  // "auto" takes the GPU when one is usable; the CPU kernel names (kernels=...) then do not apply
  if (name == "cuda" || (name == "auto" && options.kernels == "auto" && cuda::device_available(nullptr))) {
    return cuda::create_cuda_backend(options);
  }
#endif
#if AWQ_EDGE_WITH_NEON
  if (name == "auto" || name == "neon") {
    return cpu::create_cpu_backend("neon", thread_count(options), neon_kernel_level(options.kernels));
  }
#endif
  if (name == "auto" || name == "cpu") return create_cpu(options);
  const std::vector<std::string> compiled = compiled_backends();
  std::string list;
  for (const std::string& b : compiled) list += (list.empty() ? "" : ", ") + b;
  throw std::invalid_argument("[Backend] backend '" + name +
                              "' is not part of this build (available: auto, " + list + ")");
}

}  // namespace awq_edge
