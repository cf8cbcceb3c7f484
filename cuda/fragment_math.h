// fragment_math.h: what one lane computes on its piece of a weight tile (q4_layout.h), written once
// for the device kernels and for the host emulation in tests/cuda/test_q4_layout.cpp:
//   - fp16x2 arithmetic on 32-bit carriers (device: the f16x2 instructions; host: the same
//     operations rounded to nearest even through fp32, exact for the sub and mul used here and
//     within one fp16 rounding for fma),
//   - the matrix-vector inner step (lane_row_dot),
//   - the operands of mma.sync.m16n8k16 (a_registers, b_registers) and where its accumulators
//     land (accumulator_token, accumulator_column).
#pragma once

#include <cstdint>

#include "q4_layout.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif
#if !defined(__CUDA_ARCH__)
#include <cmath>
#include <cstring>

#include "awq_edge/fp16.h"
#endif

namespace awq_edge::cuda_layout {

#if defined(__CUDA_ARCH__)
__device__ __forceinline__ __half2 as_half2(uint32_t bits) {
  __half2 h;
  memcpy(&h, &bits, 4);
  return h;
}
__device__ __forceinline__ uint32_t as_bits(__half2 h) {
  uint32_t bits;
  memcpy(&bits, &h, 4);
  return bits;
}
#else
inline float low_half(uint32_t h2) { return fp16_to_float(static_cast<uint16_t>(h2 & 0xFFFFu)); }
inline float high_half(uint32_t h2) { return fp16_to_float(static_cast<uint16_t>(h2 >> 16)); }
inline uint32_t half_pair(float low, float high) {
  return static_cast<uint32_t>(float_to_fp16(low)) | (static_cast<uint32_t>(float_to_fp16(high)) << 16);
}
#endif

AWQ_EDGE_HD uint32_t h2_sub(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return as_bits(__hsub2(as_half2(a), as_half2(b)));
#else
  return half_pair(low_half(a) - low_half(b), high_half(a) - high_half(b));
#endif
}

AWQ_EDGE_HD uint32_t h2_mul(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return as_bits(__hmul2(as_half2(a), as_half2(b)));
#else
  return half_pair(low_half(a) * low_half(b), high_half(a) * high_half(b));
#endif
}

AWQ_EDGE_HD uint32_t h2_fma(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__CUDA_ARCH__)
  return as_bits(__hfma2(as_half2(a), as_half2(b), as_half2(c)));
#else
  return half_pair(std::fma(low_half(a), low_half(b), low_half(c)),
                   std::fma(high_half(a), high_half(b), high_half(c)));
#endif
}

// low + high of an fp16 pair, in fp32.
AWQ_EDGE_HD float h2_sum(uint32_t a) {
#if defined(__CUDA_ARCH__)
  const float2 f = __half22float2(as_half2(a));
  return f.x + f.y;
#else
  return low_half(a) + high_half(a);
#endif
}

// Matrix-vector step: sum over the 8 columns that `lane` holds in one word (one row) of
// (q - z) * x, x being the lane's 4 prepared fp16 pairs (scaled into [-1, 1]): the pair products
// are summed in fp16 (4 terms, each |q - z| <= 15 times |x| <= 1), then once in fp32.
AWQ_EDGE_HD float lane_row_dot(uint32_t word, uint32_t zero_pair, const uint32_t x[4]) {
  uint32_t sum = h2_mul(h2_sub(biased_pair(word, 0), zero_pair), x[0]);
  sum = h2_fma(h2_sub(biased_pair(word, 1), zero_pair), x[1], sum);
  sum = h2_fma(h2_sub(biased_pair(word, 2), zero_pair), x[2], sum);
  sum = h2_fma(h2_sub(biased_pair(word, 3), zero_pair), x[3], sum);
  return h2_sum(sum);
}

// mma.m16n8k16 A operands of the two k16 tiles of a block, from the lane's prepared x of token
// rows gid (x_low) and gid + 8 (x_high) of the m16 tile.
AWQ_EDGE_HD void a_registers(const uint32_t x_low[4], const uint32_t x_high[4], uint32_t tile0[4], uint32_t tile1[4]) {
  tile0[0] = x_low[0];  tile0[1] = x_high[0];  tile0[2] = x_low[1];  tile0[3] = x_high[1];
  tile1[0] = x_low[2];  tile1[1] = x_high[2];  tile1[2] = x_low[3];  tile1[3] = x_high[3];
}

// mma.m16n8k16 B operands of the two k16 tiles from one word (n8 tile r of the strip): the weights
// (q - z) * s in fp16, s the row's scale as an fp16 pair.
AWQ_EDGE_HD void b_registers(uint32_t word, uint32_t zero_pair, uint32_t scale_pair, uint32_t tile0[2], uint32_t tile1[2]) {
  tile0[0] = h2_mul(h2_sub(biased_pair(word, 0), zero_pair), scale_pair);
  tile0[1] = h2_mul(h2_sub(biased_pair(word, 1), zero_pair), scale_pair);
  tile1[0] = h2_mul(h2_sub(biased_pair(word, 2), zero_pair), scale_pair);
  tile1[1] = h2_mul(h2_sub(biased_pair(word, 3), zero_pair), scale_pair);
}

// Accumulator i (0..3) of `lane`: its token (row of the m16 tile) and its output column (row of W
// within the n8 tile).
AWQ_EDGE_HD int accumulator_token(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
AWQ_EDGE_HD int accumulator_column(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

}  // namespace awq_edge::cuda_layout
