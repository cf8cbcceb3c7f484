// linear.h: the CPU backend's linear layers, y = x W^T, for every storage scheme of
// docs/FORMAT.md section 5 (f16, q8_row, q4_g{32,64,128}, q3_g{32,64,128}).
//
//   x  (m, K) fp32, row-major      one row per token (m = 1 when decoding)
//   W  (N, K) as stored: see LinearWeight
//   y  (m, N) fp32, row-major
//
// Kernel levels compute the same thing: Reference (plain C++, the readable definition, kept for
// tests); on x86-64 AVX2 (AVX2 + FMA + F16C) and AVX512 (AVX-512 F + BW + VL + VNNI for decoding
// q4, q3 and q8_row, AVX2 for the rest); on aarch64 the NEON levels. The best one the CPU has is
// chosen at run time, so one build runs on any CPU of its architecture. All are multithreaded
// over output rows through the ThreadPool.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "awq_edge/schemes.h"
#include "awq_edge/tensor.h"

namespace awq_edge::cpu {

class ThreadPool;

// NEON levels (aarch64 builds with AWQ_EDGE_NEON, neon/linear_neon.cpp): NeonFp32 and NeonFp16 keep
// activations in floating point (the faithful path), NeonDot and NeonI8mm round them to int8 per
// group (the fast path, "neon-int8").
enum class KernelLevel { Reference, AVX2, AVX512, NeonFp32, NeonFp16, NeonDot, NeonI8mm };

// The best level this CPU runs (AVX2 needs avx2, fma and f16c; AVX512 those and avx512f, bw, vl
// and vnni; on aarch64 the best faithful NEON level, since the int8 levels change the numerics and
// are chosen by name).
KernelLevel best_kernel_level();
// The best int8-activation level this CPU runs (NeonI8mm or NeonDot), or Reference when none.
KernelLevel best_int8_kernel_level();
// Whether this CPU and build run `level`.
bool kernel_level_supported(KernelLevel level);
// "reference", "avx2", "avx512", "neon-fp32", "neon-fp16", "neon-dot", "neon-i8mm"
const char* kernel_level_name(KernelLevel level);

// One weight matrix in the CPU backend's layout. Built once at load time by pack_linear from the
// file's tensors; where a kernel can read the file's own bytes they are used in place (views into
// the memory mapping, which must outlive this object), anything else is repacked into owned
// buffers. The layout is private to linear.cpp.
struct LinearWeight {
  Scheme scheme;
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K
  KernelLevel level = KernelLevel::Reference;  // the kernels this weight was packed for
  struct Layout;     // defined by the kernels
  std::shared_ptr<const Layout> layout;
};

// tensors: the module's tensors in FORMAT.md order: {weight} for f16, {qweight, scales} for
// q8_row, {qweight, scales, zeros} for grouped schemes; dtypes and shapes as FORMAT.md says
// (ModelFile has checked them). Throws std::invalid_argument naming the scheme and tensor when
// they do not match.
LinearWeight pack_linear(const Scheme& scheme, int64_t rows, int64_t cols,
                         const std::vector<TensorView>& tensors, KernelLevel level);

// y (m, N) = x (m, K) W^T, computed with weight.level's kernels. x and y do not overlap.
void linear(const LinearWeight& weight, const float* x, int64_t m, float* y, ThreadPool& pool);

// Row `row` of W, dequantized to fp32 (K values): the embedding lookup of token `row`.
void dequantize_row(const LinearWeight& weight, int64_t row, float* out);

}  // namespace awq_edge::cpu
