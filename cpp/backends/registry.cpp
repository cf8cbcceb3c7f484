// registry.cpp: the backends compiled into this build, by name. A backend folder's CMake
// option defines AWQ_EDGE_WITH_<NAME> for this file and links the backend's factory.
#include <algorithm>
#include <stdexcept>

#include "awq_edge/backends.h"
#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"

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

std::shared_ptr<Backend> create_cpu(const BackendOptions& options) {
  if (options.threads < 0) {
    throw std::invalid_argument("[Backend] threads must be >= 0 (0 = one per physical core), got " +
                                std::to_string(options.threads));
  }
  const int threads = options.threads > 0 ? options.threads : cpu::physical_core_count();
  return cpu::create_cpu_backend(threads, cpu_kernel_level(options.kernels));
}

}  // namespace

std::vector<std::string> compiled_backends() { return {"cpu"}; }

std::shared_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options) {
  if (name == "auto" || name == "cpu") return create_cpu(options);
  const std::vector<std::string> compiled = compiled_backends();
  std::string list;
  for (const std::string& b : compiled) list += (list.empty() ? "" : ", ") + b;
  throw std::invalid_argument("[Backend] backend '" + name +
                              "' is not part of this build (available: auto, " + list + ")");
}

}  // namespace awq_edge
