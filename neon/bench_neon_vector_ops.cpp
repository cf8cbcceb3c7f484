// bench_neon_vector_ops.cpp: the decoder's operations other than the linear layers, through the
// CPU backend at one kernel level (reference: the portable vector_ops table; neon-*: the NEON one),
// on SmolLM2-135M's sizes for one decode step: hidden 576, intermediate 1536, 9 query / 3 key-value
// heads of 64, attention over 1024 cached positions; and attention's three parts alone for one head
// (the vector_ops.h table's dot_rows, softmax, axpy_rows over the same positions). Natively it prints microseconds per call; under
// qemu tools/count_neon_vector_op_instructions.py runs it with --iterations 1 and 1 + N and counts
// the instructions between the two.
//
//   bench_neon_vector_ops --op rms_norm|add_rms_norm|rope|silu_mul|attention|dot_rows|softmax|axpy_rows
//                         [--level neon-fp32]
//                         [--positions 1024] [--iterations 1000]
//
// Inputs are a fixed pseudo-random pattern (setup is the same whatever --iterations says).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_backend.h"
#include "vector_ops.h"

using namespace awq_edge;

namespace {

constexpr int64_t kHidden = 576, kIntermediate = 1536, kHeads = 9, kKvHeads = 3, kHeadDim = 64;

// Values in [-2, 2) from xorshift: cheap, so that setup adds few instructions under qemu.
void fill(Activation& a, uint32_t seed) {
  uint32_t state = seed | 1;
  auto* data = static_cast<float*>(a.data);
  for (int64_t i = 0; i < a.rows * a.row_stride; ++i) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;
    data[i] = static_cast<float>(state >> 8) * (4.0f / 16777216.0f) - 2.0f;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string op, level_name = "neon-fp32";
  int64_t positions = 1024;
  int iterations = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i], value = argv[i + 1];
    if (arg == "--op") op = value;
    else if (arg == "--level") level_name = value;
    else if (arg == "--positions") positions = std::atoll(value.c_str());
    else if (arg == "--iterations") iterations = std::atoi(value.c_str());
    else { std::fprintf(stderr, "bench_neon_vector_ops: unknown option %s\n", arg.c_str()); return 2; }
  }
  cpu::KernelLevel level = cpu::KernelLevel::Reference;
  bool found = false;
  for (cpu::KernelLevel l : {cpu::KernelLevel::Reference, cpu::KernelLevel::NeonFp32, cpu::KernelLevel::NeonFp16,
                             cpu::KernelLevel::NeonDot, cpu::KernelLevel::NeonI8mm}) {
    if (level_name == cpu::kernel_level_name(l)) level = l, found = true;
  }
  if (!found || !cpu::kernel_level_supported(level)) {
    std::fprintf(stderr, "bench_neon_vector_ops: level '%s' is unknown or not supported by this CPU\n",
                 level_name.c_str());
    return 2;
  }
  const std::shared_ptr<Backend> backend = cpu::create_cpu_backend("neon", 1, level);

  Activation x = backend->allocate(1, kHidden), delta = backend->allocate(1, kHidden);
  Activation weight = backend->allocate(1, kHidden), normed = backend->allocate(1, kHidden);
  Activation gate = backend->allocate(1, kIntermediate), up = backend->allocate(1, kIntermediate);
  Activation mlp = backend->allocate(1, kIntermediate);
  Activation q = backend->allocate(1, kHeads * kHeadDim), attended = backend->allocate(1, kHeads * kHeadDim);
  Activation k = backend->allocate(1, kKvHeads * kHeadDim);
  for (Activation* a : {&x, &delta, &weight, &gate, &up, &q, &k}) fill(*a, static_cast<uint32_t>(a->cols + a->rows));

  const AttentionShape shape{kHeads, kKvHeads, kHeadDim, 0.125f};
  std::unique_ptr<KVCache> cache;
  std::unique_ptr<RopeTable> rope;
  if (op == "attention") {
    cache = backend->allocate_kv_cache(1, positions, kKvHeads, kHeadDim);
    Activation keys = backend->allocate(positions, kKvHeads * kHeadDim);
    Activation values = backend->allocate(positions, kKvHeads * kHeadDim);
    fill(keys, 7);
    fill(values, 11);
    backend->store_kv(*cache, 0, 0, keys, values);
  } else if (op == "rope") {
    rope = backend->prepare_rope(std::vector<float>(kHeadDim / 2, 0.01f), positions);
  } else if (op != "rms_norm" && op != "add_rms_norm" && op != "silu_mul" && op != "dot_rows" && op != "softmax" &&
             op != "axpy_rows") {
    std::fprintf(stderr, "bench_neon_vector_ops: --op must be rms_norm, add_rms_norm, rope, silu_mul, attention, "
                         "dot_rows, softmax or axpy_rows\n");
    return 2;
  }
  // one head's keys or values as in the cache: rows of 3 heads, this head's 64 columns first
  const cpu::VectorOps& ops = cpu::vector_ops(level);
  Activation head_rows = backend->allocate(positions, kKvHeads * kHeadDim), scores = backend->allocate(1, positions);
  fill(head_rows, 13);
  fill(scores, 17);
  auto* score = static_cast<float*>(scores.data);

  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    if (op == "rms_norm") backend->rms_norm(x, weight, 1e-5f, normed);
    else if (op == "add_rms_norm") backend->add_rms_norm(x, delta, weight, 1e-5f, normed);
    else if (op == "rope") backend->rope(*rope, shape, positions - 1, q, k);
    else if (op == "silu_mul") backend->silu_mul(gate, up, mlp);
    else if (op == "attention") backend->attention(*cache, 0, shape, positions - 1, q, attended);  // at the last position
    else if (op == "dot_rows") ops.dot_rows(static_cast<float*>(q.data), static_cast<float*>(head_rows.data),
                                            head_rows.cols, positions, kHeadDim, shape.scale, score);
    else if (op == "softmax") ops.softmax(score, positions);
    else ops.axpy_rows(score, static_cast<float*>(head_rows.data), head_rows.cols, positions, kHeadDim,
                       static_cast<float*>(attended.data));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s %s: %.3f us per call (%d calls)\n", op.c_str(), level_name.c_str(),
              iterations > 0 ? seconds * 1e6 / iterations : 0.0, iterations);
  return 0;
}
