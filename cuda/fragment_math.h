// fragment_math.h: what one lane computes on its piece of a weight tile (q4_layout.h), written once
// for the device kernels and for the host emulation in tests/cuda/test_q4_layout.cpp:
//   - fp16x2 arithmetic on 32-bit carriers (device: the f16x2 instructions; host: the same
//     operations rounded to nearest even through fp32, exact for the sub and mul used here and
//     within one fp16 rounding for fma),
//   - the matrix-vector inner step (lane_row_dot),
//   - the operands of mma.sync.m16n8k16 (scaled_weight_pairs, a_registers, b_registers) and where
//     its accumulators land (accumulator_row, accumulator_token).
#pragma once

#include <cstdint>

#include "q4_layout.h"

#if defined(__CUDACC__) || defined(AWQ_EDGE_CUDA_EMULATOR)
#include <cuda_fp16.h>
#endif
#if !defined(__CUDA_ARCH__)
#include <cmath>
#include <cstring>

#include "awq_edge/fp16.h"
#endif

namespace awq_edge::cuda_layout {

#if defined(__CUDACC__) || defined(AWQ_EDGE_CUDA_EMULATOR)
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
#endif
#if !defined(__CUDA_ARCH__)
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

// (low + high of an fp16 pair) times the fp16 in half `high` (0 or 1) of `scale2`, each step rounded
// to fp16, returned in fp32 (one HADD2 and one HMUL2 with half selectors, one conversion).
AWQ_EDGE_HD float h2_sum_times(uint32_t a, uint32_t scale2, int high) {
#if defined(__CUDA_ARCH__)
  const __half2 pair = as_half2(a), scales = as_half2(scale2);
  const __half total = __hadd(__low2half(pair), __high2half(pair));
  return __half2float(__hmul(total, high ? __high2half(scales) : __low2half(scales)));
#else
  const float total = fp16_to_float(float_to_fp16(low_half(a) + high_half(a)));
  return fp16_to_float(float_to_fp16(total * (high ? high_half(scale2) : low_half(scale2))));
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

// Both halves of an fp16 pair, in fp32.
AWQ_EDGE_HD void h2_floats(uint32_t a, float& low, float& high) {
#if defined(__CUDA_ARCH__)
  const float2 f = __half22float2(as_half2(a));
  low = f.x;
  high = f.y;
#else
  low = low_half(a);
  high = high_half(a);
#endif
}

// PRMT (byte permute): byte i of the result is byte (selector >> 4i) & 7 of the 8 bytes {high:low}.
AWQ_EDGE_HD uint32_t byte_permute(uint32_t low, uint32_t high, uint32_t selector) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(low, high, selector);
#else
  const uint64_t bytes = (static_cast<uint64_t>(high) << 32) | low;
  uint32_t result = 0;
  for (int i = 0; i < 4; ++i) result |= static_cast<uint32_t>((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xFFu) << (8 * i);
  return result;
#endif
}

// (a & mask) | bits in one LOP3 (the compiler, left alone, spends two: LOP3 takes one immediate).
template <uint32_t kMask, uint32_t kBits>
AWQ_EDGE_HD uint32_t and_or(uint32_t a) {
#if defined(__CUDA_ARCH__)
  uint32_t result;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(result) : "r"(a), "n"(kMask), "n"(kBits));  // 0xEA: (a & b) | c
  return result;
#else
  return (a & kMask) | kBits;
#endif
}

// The zero points of a lane's 4 rows (bytes of zeros4, each 0..15), as the two constants unpack_pairs
// needs for row r: (1024 + z, 1024 + z) and (-(64 + z), -(64 + z)) in fp16, one PRMT each.
// fp16 1024 + z is 0x6400 | z; fp16 -(64 + z) is 0xD400 | 16 z (the ulp at 64 is 1/16).
struct ZeroPairs {
  uint32_t zeros4, zeros4_times16;
};
AWQ_EDGE_HD ZeroPairs zero_pairs(uint32_t zeros4) { return {zeros4, zeros4 << 4}; }
AWQ_EDGE_HD uint32_t biased_zero_pair_of_byte(uint32_t zeros4, int r) {
  const uint32_t rr = static_cast<uint32_t>(r);
  return byte_permute(zeros4, 0x64u, rr | (4u << 4) | (rr << 8) | (4u << 12));
}
AWQ_EDGE_HD uint32_t negative_sixteenth_zero_pair_of_byte(uint32_t zeros4_times16, int r) {
  const uint32_t rr = static_cast<uint32_t>(r);
  return byte_permute(zeros4_times16, 0xD4u, rr | (4u << 4) | (rr << 8) | (4u << 12));
}

// The four fp16 pairs (q - z) of one packed word (q4_layout.h: pair p = nibbles p and p + 4),
// exact, with one shift for the word and one LOP3 plus one HADD2/HFMA2 per pair:
//   pairs 0, 2: (w & 0x000F000F) | 0x6400 6400 = 1024 + q         minus (1024 + z)
//   pairs 1, 3: (w & 0x00F000F0) | 0x6400 6400 = 1024 + 16 q      times 1/16 minus (64 + z)
// (pairs 2, 3 from w >> 8). Every intermediate is an integer or a multiple of 1/16 below 2048.
AWQ_EDGE_HD void unpack_pairs(uint32_t word, uint32_t zero_pair, uint32_t negative_sixteenth_zero_pair, uint32_t out[4]) {
  constexpr uint32_t kLowNibbles = 0x000F000Fu, kHighNibbles = 0x00F000F0u, kMagic = 0x64006400u;
  constexpr uint32_t kSixteenth = 0x2C002C00u;  // fp16 1/16, twice
  const uint32_t shifted = word >> 8;
  out[0] = h2_sub(and_or<kLowNibbles, kMagic>(word), zero_pair);
  out[1] = h2_fma(and_or<kHighNibbles, kMagic>(word), kSixteenth, negative_sixteenth_zero_pair);
  out[2] = h2_sub(and_or<kLowNibbles, kMagic>(shifted), zero_pair);
  out[3] = h2_fma(and_or<kHighNibbles, kMagic>(shifted), kSixteenth, negative_sixteenth_zero_pair);
}

// Matrix-vector step: s * sum over the 8 columns that `lane` holds in word r (one row) of (q - z) * x,
// x being the lane's 4 prepared fp16 pairs (scaled into [-1, 1]) and s the row's fp16 scale (half
// r % 2 of scale2): the pair products are summed in fp16 (4 terms, each |q - z| <= 15 times
// |x| <= 1), the two halves added and multiplied by s in fp16 (|sum| <= 120), then taken to fp32.
AWQ_EDGE_HD float lane_row_dot(uint32_t word, const ZeroPairs& zeros, int r, const uint32_t x[4], uint32_t scale2) {
  uint32_t d[4];
  unpack_pairs(word, biased_zero_pair_of_byte(zeros.zeros4, r), negative_sixteenth_zero_pair_of_byte(zeros.zeros4_times16, r), d);
  uint32_t sum = h2_mul(d[0], x[0]);
  sum = h2_fma(d[1], x[1], sum);
  sum = h2_fma(d[2], x[2], sum);
  sum = h2_fma(d[3], x[3], sum);
  return h2_sum_times(sum, scale2, r & 1);
}

// The prefill kernel's mma.m16n8k16 multiplies A = 16 rows of W by B = x of 8 tokens (a tile of
// y^T = W x^T): both operands are then used in the registers where they were computed or loaded.
//
// The 4 fp16 pairs (q - z) * s of word r of a lane (pair p: columns 2 tig + 8 p, + 1 of the
// block), s the row's scale as an fp16 pair.
AWQ_EDGE_HD void scaled_weight_pairs(uint32_t word, const ZeroPairs& zeros, int r, uint32_t scale_pair, uint32_t out[4]) {
  uint32_t d[4];
  unpack_pairs(word, biased_zero_pair_of_byte(zeros.zeros4, r), negative_sixteenth_zero_pair_of_byte(zeros.zeros4_times16, r), d);
  for (int p = 0; p < 4; ++p) out[p] = h2_mul(d[p], scale_pair);
}

// A operands of the two k16 tiles of a block for the m16 tile of rows 8r + gid (`low`: word r's
// scaled_weight_pairs) and 8r + 8 + gid (`high`: word r + 1's), r even.
AWQ_EDGE_HD void a_registers(const uint32_t low[4], const uint32_t high[4], uint32_t tile0[4], uint32_t tile1[4]) {
  tile0[0] = low[0];  tile0[1] = high[0];  tile0[2] = low[1];  tile0[3] = high[1];
  tile1[0] = low[2];  tile1[1] = high[2];  tile1[2] = low[3];  tile1[3] = high[3];
}

// B operands of the two k16 tiles from the lane's 16 bytes of prepared x of token gid of the n8 tile.
AWQ_EDGE_HD void b_registers(const uint32_t x[4], uint32_t tile0[2], uint32_t tile1[2]) {
  tile0[0] = x[0];  tile0[1] = x[1];
  tile1[0] = x[2];  tile1[1] = x[3];
}

// Accumulator i (0..3) of `lane`: its row of the m16 tile (a row of W) and its token of the n8
// tile. With fp16 accumulators, register h (0, 1) holds accumulators 2h (low half) and 2h + 1
// (high half): one row, two tokens.
AWQ_EDGE_HD int accumulator_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
AWQ_EDGE_HD int accumulator_token(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

}  // namespace awq_edge::cuda_layout
