// bench_neon_linear.cpp: the NEON kernels on one weight matrix, natively on an aarch64 machine:
// decode (1 token) and prefill (--tokens) time per call, tokens/s and the weight bytes streamed per
// second. Also the program tools/count_neon_instructions.py runs under qemu (--iterations 1) to
// count executed instructions per weight.
//
//   bench_neon_linear [--scheme q4_g128] [--rows 4096] [--cols 4096] [--levels all]
//                     [--tokens 1,128] [--threads N] [--iterations 20]
//
// Weights are a fixed pseudo-random pattern (the kernels' work does not depend on the values).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "awq_edge/fp16.h"
#include "linear.h"
#include "thread_pool.h"

using namespace awq_edge;
using cpu::KernelLevel;

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, ',');) parts.push_back(part);
  return parts;
}

// A cheap deterministic byte pattern (xorshift), so setup stays small under instruction counting.
void fill(void* data, size_t bytes, uint32_t seed) {
  auto* out = static_cast<uint8_t*>(data);
  uint32_t state = seed | 1;
  for (size_t i = 0; i < bytes; i += 4) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;
    std::memcpy(out + i, &state, std::min<size_t>(4, bytes - i));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string scheme_name = "q4_g128", levels_text = "all", tokens_text = "1,128";
  int64_t rows = 4096, cols = 4096;
  int threads = cpu::physical_core_count(), iterations = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i], value = argv[i + 1];
    if (arg == "--scheme") scheme_name = value;
    else if (arg == "--rows") rows = std::atoll(value.c_str());
    else if (arg == "--cols") cols = std::atoll(value.c_str());
    else if (arg == "--levels") levels_text = value;
    else if (arg == "--tokens") tokens_text = value;
    else if (arg == "--threads") threads = std::atoi(value.c_str());
    else if (arg == "--iterations") iterations = std::atoi(value.c_str());
    else { std::fprintf(stderr, "bench_neon_linear: unknown option %s\n", arg.c_str()); return 2; }
  }
  const auto scheme = Scheme::parse(scheme_name);
  if (!scheme) { std::fprintf(stderr, "bench_neon_linear: unknown scheme %s\n", scheme_name.c_str()); return 2; }

  // The module's tensors (FORMAT.md section 5), scales kept small and positive.
  const uint64_t n = rows, k = cols;
  std::vector<uint32_t> words;
  std::vector<uint16_t> halves;
  std::vector<uint32_t> zeros;
  std::vector<TensorView> tensors;
  int64_t weight_bytes = 0;
  if (scheme->kind == Scheme::Kind::F16) {
    halves.assign(n * k, float_to_fp16(0.01f));
    tensors = {{halves.data(), DType::F16, Shape{n, k}, n * k * 2}};
    weight_bytes = n * k * 2;
  } else if (scheme->kind == Scheme::Kind::Q8Row) {
    words.resize((n * k + 3) / 4);
    fill(words.data(), n * k, 1);
    halves.assign(n, float_to_fp16(0.001f));
    tensors = {{words.data(), DType::I8, Shape{n, k}, n * k}, {halves.data(), DType::F16, Shape{n}, n * 2}};
    weight_bytes = n * k + n * 2;
  } else {
    const uint64_t groups = k / scheme->group_size, q_words = k * scheme->bits / 32;
    const uint64_t z_words = (groups * scheme->bits + 31) / 32;
    words.resize(n * q_words);
    fill(words.data(), words.size() * 4, 1);
    halves.assign(n * groups, float_to_fp16(0.01f));
    zeros.resize(n * z_words);
    fill(zeros.data(), zeros.size() * 4, 2);
    if (scheme->bits == 3) {  // clear the padding bits of each row's last zero-point word
      const int used = static_cast<int>(groups * 3 % 32);
      for (uint64_t r = 0; used != 0 && r < n; ++r) zeros[r * z_words + z_words - 1] &= (1u << used) - 1;
    }
    tensors = {{words.data(), DType::U32, Shape{n, q_words}, n * q_words * 4},
               {halves.data(), DType::F16, Shape{n, groups}, n * groups * 2},
               {zeros.data(), DType::U32, Shape{n, z_words}, n * z_words * 4}};
    weight_bytes = n * q_words * 4 + n * groups * 2;
  }

  std::vector<KernelLevel> levels;
  for (KernelLevel level : {KernelLevel::Reference, KernelLevel::NeonFp32, KernelLevel::NeonFp16,
                            KernelLevel::NeonDot, KernelLevel::NeonI8mm}) {
    const bool named = levels_text == "all" ? level != KernelLevel::Reference
                                            : levels_text.find(cpu::kernel_level_name(level)) != std::string::npos;
    if (named && cpu::kernel_level_supported(level)) levels.push_back(level);
  }

  cpu::ThreadPool pool(threads);
  std::printf("%s %lldx%lld, %d threads, weights %.1f MB\n", scheme_name.c_str(), static_cast<long long>(rows),
              static_cast<long long>(cols), threads, weight_bytes / 1e6);
  std::printf("%-10s %7s %12s %12s %10s\n", "level", "tokens", "ms/call", "tokens/s", "GB/s");
  for (KernelLevel level : levels) {
    const cpu::LinearWeight weight = cpu::pack_linear(*scheme, rows, cols, tensors, level);
    for (const std::string& tokens_item : split(tokens_text)) {
      const int64_t m = std::atoll(tokens_item.c_str());
      std::vector<float> x(m * cols), y(m * rows);
      for (int64_t i = 0; i < m * cols; ++i) x[i] = static_cast<float>((i * 7919) % 201 - 100) * 0.01f;
      if (iterations > 1) cpu::linear(weight, x.data(), m, y.data(), pool);  // warm-up
      const auto start = std::chrono::steady_clock::now();
      for (int it = 0; it < iterations; ++it) cpu::linear(weight, x.data(), m, y.data(), pool);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iterations;
      std::printf("%-10s %7lld %12.3f %12.1f %10.2f\n", cpu::kernel_level_name(level), static_cast<long long>(m),
                  seconds * 1e3, m / seconds, weight_bytes / seconds / 1e9);
    }
  }
  return 0;
}
