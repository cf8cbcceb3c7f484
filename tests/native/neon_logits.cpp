// neon_logits.cpp: the logits of a token sequence through a chosen backend, for the end-to-end
// comparison of tests/native/test_neon_under_qemu.py (run under qemu, compared with the host's
// Reference kernels). The first `prefill` tokens run as one forward pass (the matrix-matrix
// kernels), the rest one at a time (the matrix-vector kernels), as generation does.
//
//   neon_logits MODEL.awqe BACKEND KERNELS PREFILL OUT.f32 ID ID ...
//
// Writes (number of ids, V) float32 to OUT.f32 and the backend's description to stdout.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "awq_edge/generator.h"

int main(int argc, char** argv) {
  if (argc < 7) {
    std::cerr << "usage: neon_logits MODEL.awqe BACKEND KERNELS PREFILL OUT.f32 ID [ID ...]\n";
    return 2;
  }
  awq_edge::GeneratorOptions options;
  options.backend = argv[2];
  options.backend_options.kernels = argv[3];
  options.backend_options.threads = 2;
  const size_t prefill = std::strtoul(argv[4], nullptr, 10);
  std::vector<int32_t> ids;
  for (int i = 6; i < argc; ++i) ids.push_back(static_cast<int32_t>(std::strtol(argv[i], nullptr, 10)));
  try {
    awq_edge::Generator generator(argv[1], options);
    std::cout << generator.backend().description() << "\n";
    std::vector<float> logits = generator.forward({ids.begin(), ids.begin() + prefill}, true);
    for (size_t i = prefill; i < ids.size(); ++i) {
      const std::vector<float> row = generator.forward({ids[i]}, false);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    FILE* out = std::fopen(argv[5], "wb");
    if (out == nullptr || std::fwrite(logits.data(), sizeof(float), logits.size(), out) != logits.size()) {
      std::cerr << "neon_logits: cannot write " << argv[5] << "\n";
      return 1;
    }
    std::fclose(out);
  } catch (const std::exception& error) {
    std::cerr << "neon_logits: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
