// vector_ops.cpp: the portable table of vector_ops.h (plain C++, sums in element order: the
// definition the NEON table is tested against) and the choice of table by kernel level.
#include "vector_ops.h"

#include <algorithm>
#include <cmath>

namespace awq_edge::cpu {

namespace {

float sum_squares(const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

float add_sum_squares(float* x, const float* y, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] += y[i];
    sum += x[i] * x[i];
  }
  return sum;
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale_mul(const float* x, float scale, const float* w, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void rotate_half(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * cos[i] - x2 * sin[i];
    x[i + half] = x2 * cos[i] + x1 * sin[i];
  }
}

void dot_rows(const float* q, const float* keys, int64_t stride, int64_t length, int64_t d, float scale,
              float* scores) {
  for (int64_t p = 0; p < length; ++p) {
    const float* key = keys + p * stride;
    float dot = 0.0f;
    for (int64_t i = 0; i < d; ++i) dot += q[i] * key[i];
    scores[p] = dot * scale;
  }
}

void softmax(float* x, int64_t n) {
  const float max = *std::max_element(x, x + n);
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    total += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] /= total;
}

void axpy_rows(const float* w, const float* values, int64_t stride, int64_t length, int64_t d, float* out) {
  std::fill(out, out + d, 0.0f);
  for (int64_t p = 0; p < length; ++p) {
    const float* value = values + p * stride;
    for (int64_t i = 0; i < d; ++i) out[i] += w[p] * value[i];
  }
}

void silu_mul(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void exp(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(x[i]);
}

}  // namespace

const VectorOps& portable_vector_ops() {
  static const VectorOps ops{sum_squares, add_sum_squares, add,       scale_mul, rotate_half,
                             dot_rows,    softmax,         axpy_rows, silu_mul,  exp};
  return ops;
}

const VectorOps& vector_ops(KernelLevel level) {
#if AWQ_EDGE_WITH_NEON
  switch (level) {
    case KernelLevel::NeonFp32:
    case KernelLevel::NeonFp16:
    case KernelLevel::NeonDot:
    case KernelLevel::NeonI8mm: return neon_vector_ops();
    default: break;
  }
#endif
  (void)level;
  return portable_vector_ops();
}

}  // namespace awq_edge::cpu
