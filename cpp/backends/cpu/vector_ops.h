// vector_ops.h: the inner loops of the CPU backend's operations other than the linear layers
// (rms_norm, the residual add, RoPE, attention, SwiGLU), as one table of functions per
// implementation:
//
//   portable   vector_ops.cpp, plain C++: the readable definition, and what x86-64 runs
//   neon       neon/vector_ops_neon.cpp, ARM NEON fp32 (baseline armv8-a), the NEON kernel levels
//
// cpu_backend.cpp picks the table by its KernelLevel (vector_ops()) and keeps the loops over
// rows, heads and positions; a table works on one row, one head, or one head's positions.
// Everything is fp32; n elements; in-place use is allowed where an argument is both read and
// written (x), nowhere else.
#pragma once

#include <cstdint>

#include "linear.h"

namespace awq_edge::cpu {

struct VectorOps {
  // sum of x[i]^2 (rms_norm's first pass)
  float (*sum_squares)(const float* x, int64_t n);
  // x[i] += y[i], returning the sum of the new x[i]^2: the residual add fused with the next
  // rms_norm's first pass, so that the residual is read once
  float (*add_sum_squares)(float* x, const float* y, int64_t n);
  // x[i] += y[i]
  void (*add)(float* x, const float* y, int64_t n);
  // out[i] = x[i] * scale * w[i] (rms_norm's second pass)
  void (*scale_mul)(const float* x, float scale, const float* w, float* out, int64_t n);
  // One head of RoPE, x (2 * half): pairs (x1, x2) = (x[i], x[i + half]) become
  // (x1 cos[i] - x2 sin[i], x2 cos[i] + x1 sin[i]), i < half.
  void (*rotate_half)(float* x, const float* cos, const float* sin, int64_t half);
  // Attention's q.k for one head: scores[p] = scale * sum_i q[i] keys[p * stride + i],
  // p < length, i < d.
  void (*dot_rows)(const float* q, const float* keys, int64_t stride, int64_t length, int64_t d, float scale,
                   float* scores);
  // x[i] = exp(x[i] - max x) / sum_j exp(x[j] - max x), n >= 1, x finite or -inf (not all -inf)
  void (*softmax)(float* x, int64_t n);
  // Attention's weighted sum of V for one head (an axpy over rows): out[i] = sum_p w[p] values[p *
  // stride + i], p < length, i < d, summed in order of p from zero.
  void (*axpy_rows)(const float* w, const float* values, int64_t stride, int64_t length, int64_t d, float* out);
  // out[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] (SwiGLU)
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
  // out[i] = exp(x[i]): the exponential softmax and silu_mul use, on its own for the accuracy test
  void (*exp)(const float* x, float* out, int64_t n);
};

// The plain C++ table.
const VectorOps& portable_vector_ops();
// The NEON table (neon/vector_ops_neon.cpp; defined only in builds with AWQ_EDGE_NEON).
const VectorOps& neon_vector_ops();
// The table a backend at `level` uses: NEON for the Neon* levels, else portable.
const VectorOps& vector_ops(KernelLevel level);

}  // namespace awq_edge::cpu
