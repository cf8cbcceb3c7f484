// vector_ops_neon.cpp: the NEON table of cpp/backends/cpu/vector_ops.h: the inner loops of
// rms_norm, the residual add, RoPE, attention and SwiGLU for the NEON kernel levels, in fp32 with
// baseline armv8-a NEON (4 lanes a register), so every level and CPU runs the same code.
//
// Reductions (sum of squares, q.k) keep 4 to 8 accumulator registers and add them up once at the
// end; elementwise loops take 4 lanes a step and finish with a scalar (or padded) tail. Results
// differ from the portable table only by the order of those sums, fused multiply-adds and the
// exponential below (tests/native/test_neon_vector_ops.cpp states the tolerances).
//
// Attention, one head (D = head dim, L = positions):
//
//   dot_rows   4 positions at a time: each vector of q (loaded once) meets the same columns of
//              4 keys, 16 columns a step (one LD1 of 4 registers per row); 8 accumulators (2 per
//              key, for independent FMA chains), reduced by 3 pairwise adds into one vector of
//              4 scores
//
//                 q     [q0..q3][q4..q7] ...           D/4 vectors
//                 key p   FMLA    FMLA     -> a_p, b_p
//                 key p+1 FMLA    FMLA     -> a_p+1, b_p+1     scores[p..p+3] = faddp(faddp(..), faddp(..))
//                 ...
//
//   axpy_rows  out = sum_p w[p] V[p]: a block of 32 (then 16, 4) columns of out stays in 8
//              (4, 1) registers across all L positions; per position one broadcast of w[p] and
//              one FMLA per vector of V's row
//
// exp (softmax, silu): Cephes' expf on 4 lanes. x is clamped to [-105, 88.8] (beyond it the result
// is 0 or inf anyway; NaN stays NaN), n = round(x log2 e), r = x - n ln2 in two parts (Cody-Waite,
// |r| <= ln2/2), exp(r) ~ 1 + r + r^2 P(r) with Cephes' degree-5 polynomial, times 2^n applied as
// two powers of two 2^(n/2) 2^(n - n/2) so that results near the overflow and in the subnormal range
// (down to exp(-103.9)) come out right. Against exp in double, for normal results: at most 2 ulp is
// the bound tests/native/test_neon_vector_ops.cpp checks, 0.997 ulp the largest error it has seen
// (300,000 arguments in [-104, 89]); subnormal results within one subnormal step.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "vector_ops.h"

namespace awq_edge::cpu {

namespace {

// ---------------------------------------------------------------------------------------------
// exp on 4 lanes
// ---------------------------------------------------------------------------------------------
inline float32x4_t exp4(float32x4_t x) {
  x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.8f)), vdupq_n_f32(-105.0f));  // FMIN/FMAX keep NaN
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));  // ln2's high part: n * it is exact
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));           // ln2's low part
  float32x4_t p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), vdupq_n_f32(1.9875691500e-4f), r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  const float32x4_t y = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));  // (r + r^2 p) + 1
  // n in [-151, 128]: two halves, each a normal power of two
  const int32x4_t whole = vcvtq_s32_f32(n);
  const int32x4_t half = vshrq_n_s32(whole, 1);
  const int32x4_t bias = vdupq_n_s32(127);
  const float32x4_t scale1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(half, bias), 23));
  const float32x4_t scale2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(whole, half), bias), 23));
  return vmulq_f32(vmulq_f32(y, scale1), scale2);
}

// The last n % 4 elements of an elementwise loop: through a register padded with `pad`.
inline float32x4_t load_tail(const float* x, int64_t count, float pad) {
  float lanes[4] = {pad, pad, pad, pad};
  std::memcpy(lanes, x, static_cast<size_t>(count) * sizeof(float));
  return vld1q_f32(lanes);
}
inline void store_tail(float* x, int64_t count, float32x4_t v) {
  float lanes[4];
  vst1q_f32(lanes, v);
  std::memcpy(x, lanes, static_cast<size_t>(count) * sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// rms_norm, residual add
// ---------------------------------------------------------------------------------------------
float sum_squares(const float* x, int64_t n) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
    const float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
    a0 = vfmaq_f32(a0, v0, v0);
    a1 = vfmaq_f32(a1, v1, v1);
    a2 = vfmaq_f32(a2, v2, v2);
    a3 = vfmaq_f32(a3, v3, v3);
  }
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    a0 = vfmaq_f32(a0, v, v);
  }
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

float add_sum_squares(float* x, const float* y, int64_t n) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const float32x4_t v0 = vaddq_f32(vld1q_f32(x + i), vld1q_f32(y + i));
    const float32x4_t v1 = vaddq_f32(vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    const float32x4_t v2 = vaddq_f32(vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
    const float32x4_t v3 = vaddq_f32(vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    vst1q_f32(x + i, v0);
    vst1q_f32(x + i + 4, v1);
    vst1q_f32(x + i + 8, v2);
    vst1q_f32(x + i + 12, v3);
    a0 = vfmaq_f32(a0, v0, v0);
    a1 = vfmaq_f32(a1, v1, v1);
    a2 = vfmaq_f32(a2, v2, v2);
    a3 = vfmaq_f32(a3, v3, v3);
  }
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vaddq_f32(vld1q_f32(x + i), vld1q_f32(y + i));
    vst1q_f32(x + i, v);
    a0 = vfmaq_f32(a0, v, v);
  }
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) {
    x[i] += y[i];
    sum += x[i] * x[i];
  }
  return sum;
}

void add(float* x, const float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    vst1q_f32(x + i, vaddq_f32(vld1q_f32(x + i), vld1q_f32(y + i)));
    vst1q_f32(x + i + 4, vaddq_f32(vld1q_f32(x + i + 4), vld1q_f32(y + i + 4)));
  }
  for (; i < n; ++i) x[i] += y[i];
}

// (x * scale) * w, rounded as the portable loop: the same results.
void scale_mul(const float* x, float scale, const float* w, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    vst1q_f32(out + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
    vst1q_f32(out + i + 4, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i + 4), scale), vld1q_f32(w + i + 4)));
  }
  for (; i < n; ++i) out[i] = x[i] * scale * w[i];
}

// ---------------------------------------------------------------------------------------------
// RoPE
// ---------------------------------------------------------------------------------------------
void rotate_half(float* x, const float* cos, const float* sin, int64_t half) {
  int64_t i = 0;
  for (; i + 4 <= half; i += 4) {
    const float32x4_t x1 = vld1q_f32(x + i), x2 = vld1q_f32(x + half + i);
    const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
    vst1q_f32(x + i, vfmsq_f32(vmulq_f32(x1, c), x2, s));
    vst1q_f32(x + half + i, vfmaq_f32(vmulq_f32(x2, c), x1, s));
  }
  for (; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * cos[i] - x2 * sin[i];
    x[i + half] = x2 * cos[i] + x1 * sin[i];
  }
}

// ---------------------------------------------------------------------------------------------
// attention
// ---------------------------------------------------------------------------------------------
float dot(const float* a, const float* b, int64_t d) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  if (i + 4 <= d) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    i += 4;
  }
  float sum = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < d; ++i) sum += a[i] * b[i];
  return sum;
}

void dot_rows(const float* q, const float* keys, int64_t stride, int64_t length, int64_t d, float scale,
              float* scores) {
  const int64_t d4 = d & ~int64_t{3};
  int64_t p = 0;
  for (; p + 4 <= length; p += 4) {
    const float* k0 = keys + p * stride;
    const float* k1 = k0 + stride;
    const float* k2 = k1 + stride;
    const float* k3 = k2 + stride;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {  // 5 loads (one LD1 of 4 registers per row), 16 FMLA
      const float32x4x4_t qv = vld1q_f32_x4(q + i);
      const float32x4x4_t kv0 = vld1q_f32_x4(k0 + i), kv1 = vld1q_f32_x4(k1 + i);
      const float32x4x4_t kv2 = vld1q_f32_x4(k2 + i), kv3 = vld1q_f32_x4(k3 + i);
      a0 = vfmaq_f32(vfmaq_f32(a0, qv.val[0], kv0.val[0]), qv.val[2], kv0.val[2]);
      b0 = vfmaq_f32(vfmaq_f32(b0, qv.val[1], kv0.val[1]), qv.val[3], kv0.val[3]);
      a1 = vfmaq_f32(vfmaq_f32(a1, qv.val[0], kv1.val[0]), qv.val[2], kv1.val[2]);
      b1 = vfmaq_f32(vfmaq_f32(b1, qv.val[1], kv1.val[1]), qv.val[3], kv1.val[3]);
      a2 = vfmaq_f32(vfmaq_f32(a2, qv.val[0], kv2.val[0]), qv.val[2], kv2.val[2]);
      b2 = vfmaq_f32(vfmaq_f32(b2, qv.val[1], kv2.val[1]), qv.val[3], kv2.val[3]);
      a3 = vfmaq_f32(vfmaq_f32(a3, qv.val[0], kv3.val[0]), qv.val[2], kv3.val[2]);
      b3 = vfmaq_f32(vfmaq_f32(b3, qv.val[1], kv3.val[1]), qv.val[3], kv3.val[3]);
    }
    if (i + 8 <= d) {
      const float32x4x2_t qv = vld1q_f32_x2(q + i);
      const float32x4x2_t kv0 = vld1q_f32_x2(k0 + i), kv1 = vld1q_f32_x2(k1 + i);
      const float32x4x2_t kv2 = vld1q_f32_x2(k2 + i), kv3 = vld1q_f32_x2(k3 + i);
      a0 = vfmaq_f32(a0, qv.val[0], kv0.val[0]);
      b0 = vfmaq_f32(b0, qv.val[1], kv0.val[1]);
      a1 = vfmaq_f32(a1, qv.val[0], kv1.val[0]);
      b1 = vfmaq_f32(b1, qv.val[1], kv1.val[1]);
      a2 = vfmaq_f32(a2, qv.val[0], kv2.val[0]);
      b2 = vfmaq_f32(b2, qv.val[1], kv2.val[1]);
      a3 = vfmaq_f32(a3, qv.val[0], kv3.val[0]);
      b3 = vfmaq_f32(b3, qv.val[1], kv3.val[1]);
      i += 8;
    }
    if (i < d4) {
      const float32x4_t qa = vld1q_f32(q + i);
      a0 = vfmaq_f32(a0, qa, vld1q_f32(k0 + i));
      a1 = vfmaq_f32(a1, qa, vld1q_f32(k1 + i));
      a2 = vfmaq_f32(a2, qa, vld1q_f32(k2 + i));
      a3 = vfmaq_f32(a3, qa, vld1q_f32(k3 + i));
      i += 4;
    }
    // lane j = the sum of key j's accumulators
    float32x4_t sums = vpaddq_f32(vpaddq_f32(vaddq_f32(a0, b0), vaddq_f32(a1, b1)),
                                  vpaddq_f32(vaddq_f32(a2, b2), vaddq_f32(a3, b3)));
    if (i < d) {
      float rest[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (; i < d; ++i) {
        rest[0] += q[i] * k0[i];
        rest[1] += q[i] * k1[i];
        rest[2] += q[i] * k2[i];
        rest[3] += q[i] * k3[i];
      }
      sums = vaddq_f32(sums, vld1q_f32(rest));
    }
    vst1q_f32(scores + p, vmulq_n_f32(sums, scale));
  }
  for (; p < length; ++p) scores[p] = dot(q, keys + p * stride, d) * scale;
}

void softmax(float* x, int64_t n) {
  float32x4_t top = vdupq_n_f32(-INFINITY);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) top = vmaxq_f32(top, vld1q_f32(x + i));
  float max = vmaxvq_f32(top);
  for (; i < n; ++i) max = std::max(max, x[i]);

  const float32x4_t shift = vdupq_n_f32(max);
  float32x4_t t0 = vdupq_n_f32(0.0f), t1 = t0;
  for (i = 0; i + 8 <= n; i += 8) {
    const float32x4_t e0 = exp4(vsubq_f32(vld1q_f32(x + i), shift));
    const float32x4_t e1 = exp4(vsubq_f32(vld1q_f32(x + i + 4), shift));
    vst1q_f32(x + i, e0);
    vst1q_f32(x + i + 4, e1);
    t0 = vaddq_f32(t0, e0);
    t1 = vaddq_f32(t1, e1);
  }
  if (i + 4 <= n) {
    const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), shift));
    vst1q_f32(x + i, e);
    t0 = vaddq_f32(t0, e);
    i += 4;
  }
  if (i < n) {  // padded with -inf, whose exp is 0
    const float32x4_t e = exp4(vsubq_f32(load_tail(x + i, n - i, -INFINITY), shift));
    store_tail(x + i, n - i, e);
    t0 = vaddq_f32(t0, e);
  }
  const float32x4_t total = vdupq_n_f32(vaddvq_f32(vaddq_f32(t0, t1)));
  for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vdivq_f32(vld1q_f32(x + i), total));
  for (; i < n; ++i) x[i] /= vgetq_lane_f32(total, 0);
}

// out[0 .. 4V) = sum_p w[p] values[p * stride + 0 .. 4V), in V accumulators across all positions.
template <int V>
void axpy_block(const float* w, const float* values, int64_t stride, int64_t length, float* out) {
  float32x4_t acc[V];
  for (int j = 0; j < V; ++j) acc[j] = vdupq_n_f32(0.0f);
  for (int64_t p = 0; p < length; ++p) {
    const float32x4_t weight = vdupq_n_f32(w[p]);
    const float* value = values + p * stride;
    if constexpr (V % 4 == 0) {  // LD1 of 4 registers
      for (int j = 0; j < V; j += 4) {
        const float32x4x4_t v = vld1q_f32_x4(value + 4 * j);
        for (int l = 0; l < 4; ++l) acc[j + l] = vfmaq_f32(acc[j + l], weight, v.val[l]);
      }
    } else {
      for (int j = 0; j < V; ++j) acc[j] = vfmaq_f32(acc[j], weight, vld1q_f32(value + 4 * j));
    }
  }
  for (int j = 0; j < V; ++j) vst1q_f32(out + 4 * j, acc[j]);
}

void axpy_rows(const float* w, const float* values, int64_t stride, int64_t length, int64_t d, float* out) {
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) axpy_block<8>(w, values + i, stride, length, out + i);
  if (i + 16 <= d) {
    axpy_block<4>(w, values + i, stride, length, out + i);
    i += 16;
  }
  for (; i + 4 <= d; i += 4) axpy_block<1>(w, values + i, stride, length, out + i);
  for (; i < d; ++i) {
    float sum = 0.0f;
    for (int64_t p = 0; p < length; ++p) sum += w[p] * values[p * stride + i];
    out[i] = sum;
  }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU, exp
// ---------------------------------------------------------------------------------------------
inline float32x4_t silu_mul4(float32x4_t g, float32x4_t u) {
  const float32x4_t denominator = vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g)));
  return vmulq_f32(vdivq_f32(g, denominator), u);
}

void silu_mul(const float* g, const float* u, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, silu_mul4(vld1q_f32(g + i), vld1q_f32(u + i)));
  if (i < n) store_tail(out + i, n - i, silu_mul4(load_tail(g + i, n - i, 0.0f), load_tail(u + i, n - i, 0.0f)));
}

void exp(const float* x, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, exp4(vld1q_f32(x + i)));
  if (i < n) store_tail(out + i, n - i, exp4(load_tail(x + i, n - i, 0.0f)));
}

}  // namespace

const VectorOps& neon_vector_ops() {
  static const VectorOps ops{sum_squares, add_sum_squares, add,       scale_mul, rotate_half,
                             dot_rows,    softmax,         axpy_rows, silu_mul,  exp};
  return ops;
}

}  // namespace awq_edge::cpu
