// backends.h: creating a backend by name. The backends compiled into this build register here
// (cpp/backends/registry.cpp); the decoder itself never names one.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "awq_edge/backend.h"

namespace awq_edge {

struct BackendOptions {
  int threads = 0;              // CPU threads; 0 = the machine's physical cores
  std::string kernels = "auto"; // CPU kernel level: "auto" (the best this CPU runs),
                                // "reference" (plain C++), "avx2" or "avx512"; for the NEON
                                // backend "neon" (faithful) or "neon-int8" (int8 activations)
};

// The backends this build contains, in the order "auto" tries them: e.g. {"cuda", "cpu"}.
std::vector<std::string> compiled_backends();

// Whether backend `name` (one of compiled_backends()) can run on this machine; when not, `reason`
// says why (for "cuda": no driver, no GPU, too old a GPU, no kernels built for it).
bool backend_available(const std::string& name, std::string* reason);

// name: "auto" (the first compiled backend whose hardware is present) or one of
// compiled_backends(). Throws std::invalid_argument for an unknown or absent backend, naming
// the ones that are available, and std::runtime_error when the hardware is missing.
std::shared_ptr<Backend> create_backend(const std::string& name, const BackendOptions& options = {});

}  // namespace awq_edge
