// linear_neon.cpp: y (m, N) = x (m, K) W^T with ARM NEON (aarch64: 32 registers of 128 bits), for
// the CPU backend's NEON kernel levels (linear.h). The rest of the engine is built for baseline
// aarch64; the kernels that need an extension carry it as a function attribute, and linear.cpp
// picks a level at run time from the CPU's features (neon_level_supported below), so one binary
// runs on any aarch64 CPU.
//
//   level       decode (m < 8) of q4/q3                              needs
//   neon-fp32   fp32 FMLA, W converted nibble -> fp32                  (baseline)
//   neon-fp16   fp16 FMLA, W nibble -> fp16, x scaled to fp16          FEAT_FP16 (asimdhp)
//   neon-dot    x rounded to int8 per group, SDOT 4 products a lane    FEAT_DotProd (asimddp)
//               prefill 4 rows x 4 tokens by lane-indexed SDOT
//   neon-i8mm   as neon-dot for decode; prefill 4 rows x 8 tokens      FEAT_I8MM
//               by SMMLA (2 rows x 2 tokens x 8 columns an instruction)
//
// neon-fp32 and neon-fp16 are the faithful path (activations stay floating point);
// neon-dot and neon-i8mm the fast path ("neon-int8"). f16 and q8_row weights use fp32 FMLA at every
// level; prefill (m >= 8) of the faithful levels dequantizes W tile by tile to fp32 (below).
//
// Packing copies W out of the file's q4 layout (q3 is widened to it first), where row n is K/2
// bytes, byte b holding column 2b in its low and column 2b+1 in its high nibble, into chunks
// (Layout::chunks): the 16 bytes of 32 columns of 4 rows one after another, so that the 4 rows a
// kernel computes are one stream read by one 64-byte LD1 of 4 registers a 32-column step (one
// cache line, and one stream for the hardware prefetcher instead of 4):
//
//   file, rows n0 .. n0+3 (N rows of K/2 bytes)       chunks of block n0/4 (64 bytes each)
//   n0   | c0 | c1 | c2 | ...                         | n0 c0 | n0+1 c0 | n0+2 c0 | n0+3 c0 |  chunk 0
//   n0+1 | c0 | c1 | c2 | ...           ==>           | n0 c1 | n0+1 c1 | n0+2 c1 | n0+3 c1 |  chunk 1
//   n0+2 | c0 | c1 | c2 | ...                         | ...                                 |  ...
//   n0+3 | c0 | c1 | c2 | ...                         ci = the 16 bytes of columns 32i .. 32i+31
//
// A block past N is padded with zero rows. The bytes of a chunk keep the file's order, and
// pack_linear then releases the file's pages of the module (MappedFile::release). A kernel never
// shuffles W (but neon-i8mm's prefill, which zips two rows' halves once per 8 tokens); it
// extracts nibbles with one AND (or shift) and a conversion whose fixed-point form divides by the
// nibble's bit position for free (ucvtf #fbits), and instead x is permuted once a call into the
// order in which the lanes come out. For one 32-column block c .. c+31 (16 bytes):
//
//   fp32: 4 x u32 lanes, lane i = 8 nibbles of columns c+8i .. c+8i+7
//         vector t (t = 0..7) = (w & 0xF << 4t) ucvtf #4t   ->  lanes hold c+t, c+8+t, c+16+t, c+24+t
//   fp16: 8 x u16 lanes, lane i = columns c+4i .. c+4i+3
//         vector t (t = 0..3) = (w & 0xF << 4t) ucvtf #4t   ->  lanes hold c+t, c+4+t, ..., c+28+t
//   int8: 16 x u8 lanes, lane i = columns c+2i, c+2i+1
//         even = w & 0xF, odd = w >> 4                       ->  lanes hold c, c+2, ... / c+1, c+3, ...
//
//             byte   0      1      2      3     ...   15
//   nibbles        c c+1  c+2 c+3  c+4 c+5  c+6 c+7  ... c+30 c+31     (low, high)
//   u16 lane 0 = bytes 0,1 = columns c..c+3; u32 lane 0 = bytes 0..3 = columns c..c+7
//
// A group (32..128 columns) is a union of whole 32-column blocks, so it is the same in every order.
// The zero point is factored out of the inner loop, for each group j of row n:
//   y[n] += s[n][j] * (sum_{k in j} q[n][k] x[k]) - s[n][j] z[n][j] xsum[j]
// The kernels compute kRows = 4 rows at once (each x load serves 4 rows); the group epilogue then
// works on the 4 rows as one vector, which is why packing interleaves the scales and zero points
// by 4 rows (Layout::scales_by4 / zeros_by4, (ceil(N/4), K/g, 4), padding rows zero).
//
// Numerics. fp32: as the Reference level up to fp32 rounding. fp16: x of each group is scaled by
// a power of two into [-1, 1] (exact) and rounded to fp16, the products of a group are summed in
// fp16 lanes (at most g/8 products each) and everything after in fp32: a relative error of about
// 1e-3 of the group's sum of |q x| (the lanes of a group are also added pairwise twice in fp16). int8: x of each group is rounded to int8 by its largest |x|
// (x ~ x_scale * x_q, |x_q| <= 127), a relative error of up to 0.4% of that value; the integer
// sums are exact.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>


#include "awq_edge/fp16.h"
#include "cpu_features.h"
#include "linear_layout.h"

// Per-function instruction-set extensions (GCC >= 10, Clang): a function so marked runs only
// after neon_level_supported() said yes.
#define AWQ_EDGE_TARGET_FP16 __attribute__((target("arch=armv8.2-a+fp16")))
#define AWQ_EDGE_TARGET_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#define AWQ_EDGE_TARGET_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))

namespace awq_edge::cpu {

namespace {

constexpr int kRows = 4;          // rows of W per matrix-vector step (each x load serves 4)
constexpr int kMinTiledRows = 8;  // from this many rows of x on, prefill kernels
constexpr int kTileRows = 16;     // rows of W dequantized at once on the tiled path
constexpr int kTileX = 4;         // register block of the tile kernel: 4 rows of x ...
constexpr int kTileW = 4;         // ... times 4 rows of W = 16 accumulators (+ 8 loaded vectors)


// ---------------------------------------------------------------------------------------------
// x, prepared once a call (per row of x) in the order of the level's lanes (opening comment).
// ---------------------------------------------------------------------------------------------
struct PreparedX {
  std::vector<float> f32;      // (K) fp32 order
  std::vector<__fp16> f16;     // (K) fp16 order, x / scales[j]
  std::vector<int8_t> i8;      // (K) int8 (nibble) order, round(x / scales[j])
  std::vector<float> scales;   // (K/g) 1 (fp32), a power of two >= max |x| (fp16), max |x| / 127 (int8)
  std::vector<float> sums;     // (K/g) sum of x (fp32, fp16)
  std::vector<int32_t> qsums;  // (K/g) sum of x_q (int8)
};

// Position of column `within` (0..31) of a 32-column block in each order (int8: (within % 2) * 16 +
// within / 2, which prepare_int8 gets by LD2's even / odd split).
int fp32_position(int within) { return (within % 8) * 4 + within / 8; }
int fp16_position(int within) { return (within % 4) * 8 + within / 4; }

float largest_magnitude(const float* x, int64_t n) {
  float largest = 0.0f;
  for (int64_t k = 0; k < n; ++k) largest = std::max(largest, std::fabs(x[k]));
  return largest;
}

void prepare_fp32(const float* x, int64_t cols, int64_t group_size, PreparedX& out) {
  const int64_t groups = cols / group_size;
  out.f32.resize(cols);
  out.scales.assign(groups, 1.0f);
  out.sums.resize(groups);
  for (int64_t j = 0; j < groups; ++j) {
    double sum = 0.0;
    for (int64_t k = j * group_size; k < (j + 1) * group_size; ++k) {
      out.f32[k - k % 32 + fp32_position(k % 32)] = x[k];
      sum += x[k];
    }
    out.sums[j] = static_cast<float>(sum);
  }
}

void prepare_fp16(const float* x, int64_t cols, int64_t group_size, PreparedX& out) {
  const int64_t groups = cols / group_size;
  out.f16.resize(cols);
  out.scales.resize(groups);
  out.sums.resize(groups);
  for (int64_t j = 0; j < groups; ++j) {
    int exponent = 0;
    std::frexp(largest_magnitude(x + j * group_size, group_size), &exponent);  // max < 2^exponent
    const float inverse = std::ldexp(1.0f, -exponent);
    double sum = 0.0;
    for (int64_t k = j * group_size; k < (j + 1) * group_size; ++k) {
      out.f16[k - k % 32 + fp16_position(k % 32)] = static_cast<__fp16>(x[k] * inverse);
      sum += x[k];
    }
    out.scales[j] = std::ldexp(1.0f, exponent);
    out.sums[j] = static_cast<float>(sum);
  }
}

// Vectorized, as prefill runs it once per token (scalar, it cost about 30 instructions a column):
// the same numbers as q = lrintf(x * inverse) one by one, since the product is one IEEE multiply
// and FCVTNS rounds to nearest even like lrintf in the default rounding mode (test_neon_kernels
// compares with that scalar definition exactly).
void prepare_int8(const float* x, int64_t cols, int64_t group_size, PreparedX& out) {
  const int64_t groups = cols / group_size;
  out.i8.resize(cols);
  out.scales.resize(groups);
  out.qsums.resize(groups);
  for (int64_t j = 0; j < groups; ++j) {
    const float* group = x + j * group_size;
    float32x4_t largest4 = vdupq_n_f32(0.0f);
    for (int64_t k = 0; k < group_size; k += 16) {
      const float32x4x4_t v = vld1q_f32_x4(group + k);
      largest4 = vmaxq_f32(vmaxq_f32(largest4, vabsq_f32(v.val[0])), vabsq_f32(v.val[1]));
      largest4 = vmaxq_f32(vmaxq_f32(largest4, vabsq_f32(v.val[2])), vabsq_f32(v.val[3]));
    }
    const float largest = vmaxvq_f32(largest4);
    const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
    int16x8_t sum = vdupq_n_s16(0);  // |sum| <= 16 values of |q| <= 127 a lane
    for (int64_t k = 0; k < group_size; k += 32) {
      int8x16_t half[2];  // even columns (int8 positions 0..15), odd ones (16..31)
      for (int parity = 0; parity < 2; ++parity) {
        int32x4_t q[4];
        for (int i = 0; i < 4; ++i) {
          const float32x4x2_t v = vld2q_f32(group + k + 8 * i);  // columns k+8i .. k+8i+7, split even / odd
          q[i] = vcvtnq_s32_f32(vmulq_n_f32(v.val[parity], inverse));
        }
        // |q| <= 127: the low bytes are the values
        const int16x8_t q01 = vuzp1q_s16(vreinterpretq_s16_s32(q[0]), vreinterpretq_s16_s32(q[1]));
        const int16x8_t q23 = vuzp1q_s16(vreinterpretq_s16_s32(q[2]), vreinterpretq_s16_s32(q[3]));
        half[parity] = vuzp1q_s8(vreinterpretq_s8_s16(q01), vreinterpretq_s8_s16(q23));
        sum = vpadalq_s8(sum, half[parity]);
      }
      const int64_t at = j * group_size + k;
      vst1q_s8(out.i8.data() + at, half[0]);
      vst1q_s8(out.i8.data() + at + 16, half[1]);
    }
    out.scales[j] = largest / 127.0f;
    out.qsums[j] = vaddlvq_s16(sum);
  }
}

// ---------------------------------------------------------------------------------------------
// Grouped decode: rows n0 .. n0+3 of y = W x (padding rows past N are computed, not stored).
// ---------------------------------------------------------------------------------------------
struct RowBlock {
  const uint8_t* nibbles;   // (K/32, 4 rows, 16 bytes) q4, this block's chunks
  const uint16_t* scales;   // (K/g, 4) fp16, this block's slice of scales_by4
  const uint8_t* zeros;     // (K/g, 4) of zeros_by4
  int valid;                // rows of the block inside W (1..4)
};

RowBlock row_block(const LinearWeight& w, int64_t n0) {
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t groups = w.cols / w.scheme.group_size;
  RowBlock block{};
  block.valid = static_cast<int>(std::min<int64_t>(kRows, w.rows - n0));
  block.nibbles = layout.chunks[(n0 / kRows) * (w.cols / 32)].bytes;
  block.scales = layout.scales_by4.data() + (n0 / kRows) * groups * kRows;
  block.zeros = layout.zeros_by4.data() + (n0 / kRows) * groups * kRows;
  return block;
}

float32x4_t sum_lanes_of_4(float32x4_t a, float32x4_t b, float32x4_t c, float32x4_t d) {
  return vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));  // {sum a, sum b, sum c, sum d}
}

float32x4_t group_scales(const RowBlock& b, int64_t j) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(b.scales + j * kRows)));
}

uint32x4_t group_zeros(const RowBlock& b, int64_t j) {
  const uint8x8_t bytes = vreinterpret_u8_u32(vld1_dup_u32(reinterpret_cast<const uint32_t*>(b.zeros + j * kRows)));
  return vmovl_u16(vget_low_u16(vmovl_u8(bytes)));
}

// Float epilogue of group j: total += s * (dots * x_scale) - s * z * xsum.
float32x4_t float_group_end(const RowBlock& b, int64_t j, float32x4_t dots, float x_scale, float x_sum,
                            float32x4_t total) {
  const float32x4_t s = group_scales(b, j);
  const float32x4_t s_z = vmulq_f32(s, vcvtq_f32_u32(group_zeros(b, j)));
  total = vfmaq_f32(total, dots, vmulq_n_f32(s, x_scale));
  return vfmsq_n_f32(total, s_z, x_sum);
}

void store_rows(float32x4_t total, const RowBlock& b, float* y) {
  if (b.valid == kRows) return vst1q_f32(y, total);
  float lanes[kRows];
  vst1q_f32(lanes, total);
  for (int r = 0; r < b.valid; ++r) y[r] = lanes[r];
}

template <int T>
float32x4_t nibbles_f32(uint32x4_t w) {
  if constexpr (T == 0) return vcvtq_f32_u32(vandq_u32(w, vdupq_n_u32(0xF)));
  else if constexpr (T == 7) return vcvtq_f32_u32(vshrq_n_u32(w, 28));
  else return vcvtq_n_f32_u32(vandq_u32(w, vdupq_n_u32(0xFu << (4 * T))), 4 * T);
}

template <int T>
float32x4_t fma_nibbles_f32(float32x4_t acc, uint32x4_t w, const float32x4_t x[8]) {
  return vfmaq_f32(acc, nibbles_f32<T>(w), x[T]);
}

template <int kGroup>
void grouped_matvec_fp32(const LinearWeight& w, const PreparedX& x, int64_t n0, float* y) {
  const RowBlock b = row_block(w, n0);
  const int64_t groups = w.cols / kGroup;
  const float* x_f32 = x.f32.data();
  const float *x_scales = x.scales.data(), *x_sums = x.sums.data();  // locals: kept in registers
  float32x4_t total = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < groups; ++j) {
    float32x4_t acc[kRows];
    for (int r = 0; r < kRows; ++r) acc[r] = vdupq_n_f32(0.0f);
#pragma GCC unroll 4
    for (int c = 0; c < kGroup; c += 32) {  // a constant trip count, unrolled
      const int64_t k = j * kGroup + c;
      float32x4_t xk[8];
      for (int t = 0; t < 8; ++t) xk[t] = vld1q_f32(x_f32 + k + 4 * t);
      const uint32x4x4_t q4 = vld1q_u32_x4(reinterpret_cast<const uint32_t*>(b.nibbles + 2 * k));  // 4 rows
      for (int r = 0; r < kRows; ++r) {
        const uint32x4_t q = q4.val[r];
        float32x4_t a = acc[r];
        a = fma_nibbles_f32<0>(a, q, xk);
        a = fma_nibbles_f32<1>(a, q, xk);
        a = fma_nibbles_f32<2>(a, q, xk);
        a = fma_nibbles_f32<3>(a, q, xk);
        a = fma_nibbles_f32<4>(a, q, xk);
        a = fma_nibbles_f32<5>(a, q, xk);
        a = fma_nibbles_f32<6>(a, q, xk);
        acc[r] = fma_nibbles_f32<7>(a, q, xk);
      }
    }
    total = float_group_end(b, j, sum_lanes_of_4(acc[0], acc[1], acc[2], acc[3]), x_scales[j], x_sums[j], total);
  }
  store_rows(total, b, y + n0);
}

// The 32 products of one 32-column block of one row, summed in fp16 lanes: acc + q x (or q x for the
// group's first block; FMLA onto zero would cost a register clear).
template <bool kFirst>
AWQ_EDGE_TARGET_FP16 float16x8_t fma_block_f16(float16x8_t acc, uint16x8_t q, const float16x8_t x[4]) {
  const float16x8_t q0 = vcvtq_f16_u16(vandq_u16(q, vdupq_n_u16(0x000F)));
  float16x8_t a = kFirst ? vmulq_f16(q0, x[0]) : vfmaq_f16(acc, q0, x[0]);
  a = vfmaq_f16(a, vcvtq_n_f16_u16(vandq_u16(q, vdupq_n_u16(0x00F0)), 4), x[1]);
  a = vfmaq_f16(a, vcvtq_n_f16_u16(vandq_u16(q, vdupq_n_u16(0x0F00)), 8), x[2]);
  return vfmaq_f16(a, vcvtq_f16_u16(vshrq_n_u16(q, 12)), x[3]);
}

// {row 0, 1, 2, 3} of a group: the lanes of each row summed pairwise twice in fp16, then in fp32.
AWQ_EDGE_TARGET_FP16 float32x4_t group_dots_f16(const float16x8_t acc[kRows]) {
  const float16x8_t quads = vpaddq_f16(vpaddq_f16(acc[0], acc[1]), vpaddq_f16(acc[2], acc[3]));
  return vpaddq_f32(vcvt_f32_f16(vget_low_f16(quads)), vcvt_high_f32_f16(quads));
}

template <int kGroup>
AWQ_EDGE_TARGET_FP16 void grouped_matvec_fp16(const LinearWeight& w, const PreparedX& x, int64_t n0, float* y) {
  const RowBlock b = row_block(w, n0);
  const int64_t groups = w.cols / kGroup;
  const float16_t* x_f16 = reinterpret_cast<const float16_t*>(x.f16.data());
  const float *x_scales = x.scales.data(), *x_sums = x.sums.data();  // locals: kept in registers
  float32x4_t total = vdupq_n_f32(0.0f);
  int64_t j = 0;
  if constexpr (kGroup == 32) {
    // Two groups a step: one load of 64 columns per row, and the two epilogues share their loads
    // (scales, zero points, x's scales and sums) and conversions. The same arithmetic per group as
    // below, so the same results.
    // Pointers that each load advances.
    const float16_t* xk = x_f16;
    const uint16_t* wk = reinterpret_cast<const uint16_t*>(b.nibbles);
    const uint16_t* scales = b.scales;
    const uint8_t* zeros = b.zeros;
    const float *x_scale_at = x_scales, *x_sum_at = x_sums;
    for (; j + 2 <= groups; j += 2) {
      float32x4_t dots[2];
      for (int h = 0; h < 2; ++h, xk += 32, wk += 32) {  // group j + h
        const float16x8x4_t x4 = vld1q_f16_x4(xk);  // one LD1 of 4 registers
        const float16x8_t xs[4] = {x4.val[0], x4.val[1], x4.val[2], x4.val[3]};
        const uint16x8x4_t q4 = vld1q_u16_x4(wk);   // and one of the 4 rows' 32 columns
        float16x8_t acc[kRows];
        for (int r = 0; r < kRows; ++r) acc[r] = fma_block_f16<true>(acc[r], q4.val[r], xs);
        dots[h] = group_dots_f16(acc);
      }
      // loaded only now (the empty asm makes the addresses depend on the dot products), so that
      // nothing is held in a register across the products
      asm("" : "+r"(scales), "+r"(zeros), "+r"(x_scale_at), "+r"(x_sum_at) : "w"(dots[1]));
      const float16x8_t s = vreinterpretq_f16_u16(vld1q_u16(scales));  // {group j, j + 1}
      const float16x8_t z = vcvtq_f16_u16(vmovl_u8(vld1_u8(zeros)));  // exact: z <= 15
      float32x2_t x_scale = vld1_f32(x_scale_at), x_sum = vld1_f32(x_sum_at);
      asm("" : "+w"(x_scale), "+w"(x_sum));  // one load of both lanes
      scales += 2 * kRows, zeros += 2 * kRows, x_scale_at += 2, x_sum_at += 2;
      const float32x4_t s_a = vcvt_f32_f16(vget_low_f16(s)), s_b = vcvt_high_f32_f16(s);
      const float32x4_t z_a = vcvt_f32_f16(vget_low_f16(z)), z_b = vcvt_high_f32_f16(z);
      total = vfmaq_f32(total, dots[0], vmulq_lane_f32(s_a, x_scale, 0));
      total = vfmsq_lane_f32(total, vmulq_f32(s_a, z_a), x_sum, 0);
      total = vfmaq_f32(total, dots[1], vmulq_lane_f32(s_b, x_scale, 1));
      total = vfmsq_lane_f32(total, vmulq_f32(s_b, z_b), x_sum, 1);
    }
  }
  for (; j < groups; ++j) {
    float16x8_t acc[kRows];
#pragma GCC unroll 4
    for (int c = 0; c < kGroup; c += 32) {  // a constant trip count, unrolled
      const int64_t k = j * kGroup + c;
      const float16x8x4_t x4 = vld1q_f16_x4(x_f16 + k);  // one LD1 of 4 registers
      const float16x8_t xs[4] = {x4.val[0], x4.val[1], x4.val[2], x4.val[3]};
      const uint16x8x4_t q4 = vld1q_u16_x4(reinterpret_cast<const uint16_t*>(b.nibbles + 2 * k));  // 4 rows
      for (int r = 0; r < kRows; ++r) {
        acc[r] = c == 0 ? fma_block_f16<true>(acc[r], q4.val[r], xs) : fma_block_f16<false>(acc[r], q4.val[r], xs);
      }
    }
    total = float_group_end(b, j, group_dots_f16(acc), x_scales[j], x_sums[j], total);
  }
  store_rows(total, b, y + n0);
}

template <int kGroup>
AWQ_EDGE_TARGET_DOT void grouped_matvec_dot(const LinearWeight& w, const PreparedX& x, int64_t n0, float* y) {
  const RowBlock b = row_block(w, n0);
  const int64_t groups = w.cols / kGroup;
  const uint8x16_t low_nibble = vdupq_n_u8(0xF);
  const int8_t* x_i8 = x.i8.data();
  const float* x_scales = x.scales.data();
  const int32_t* x_qsums = x.qsums.data();  // locals: kept in registers
  float32x4_t total = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < groups; ++j) {
    int32x4_t dot[kRows];
    for (int r = 0; r < kRows; ++r) dot[r] = vdupq_n_s32(0);
#pragma GCC unroll 4
    for (int c = 0; c < kGroup; c += 32) {  // a constant trip count, unrolled
      const int64_t k = j * kGroup + c;
      const int8x16_t x_even = vld1q_s8(x_i8 + k), x_odd = vld1q_s8(x_i8 + k + 16);
      const uint8x16x4_t q4 = vld1q_u8_x4(b.nibbles + 2 * k);  // 4 rows, one 64-byte load
      for (int r = 0; r < kRows; ++r) {
        dot[r] = vdotq_s32(dot[r], vreinterpretq_s8_u8(vandq_u8(q4.val[r], low_nibble)), x_even);
        dot[r] = vdotq_s32(dot[r], vreinterpretq_s8_u8(vshrq_n_u8(q4.val[r], 4)), x_odd);
      }
    }
    // sum q x_q - z sum x_q, exact in int32, then one fp32 multiply-add for the 4 rows
    int32x4_t sums = vpaddq_s32(vpaddq_s32(dot[0], dot[1]), vpaddq_s32(dot[2], dot[3]));
    sums = vmlsq_n_s32(sums, vreinterpretq_s32_u32(group_zeros(b, j)), x_qsums[j]);
    total = vfmaq_f32(total, vcvtq_f32_s32(sums), vmulq_n_f32(group_scales(b, j), x_scales[j]));
  }
  store_rows(total, b, y + n0);
}

enum class Path { Fp32, Fp16, Dot };

template <Path kPath, int kGroup>
void grouped_matvec_rows(const LinearWeight& w, const PreparedX& x, int64_t n0, float* y) {
  if constexpr (kPath == Path::Fp32) grouped_matvec_fp32<kGroup>(w, x, n0, y);
  else if constexpr (kPath == Path::Fp16) grouped_matvec_fp16<kGroup>(w, x, n0, y);
  else grouped_matvec_dot<kGroup>(w, x, n0, y);
}

template <Path kPath>
void grouped_matvec(const LinearWeight& w, const PreparedX& x, float* y, ThreadPool& pool) {
  const int64_t blocks = (w.rows + kRows - 1) / kRows;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      with_group_size(w.scheme.group_size,
                      [&](auto g) { grouped_matvec_rows<kPath, decltype(g)::value>(w, x, block * kRows, y); });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// f16 and q8_row decode: fp32 FMLA, 16 columns a step, 4 rows at once, then a scalar tail.
// ---------------------------------------------------------------------------------------------
struct F16Rows {
  const uint16_t* data;
  int64_t cols;
  // 16 weights of row n from column k, as 4 fp32 vectors
  void load(int64_t n, int64_t k, float32x4_t out[4]) const {
    const float16x8_t a = vreinterpretq_f16_u16(vld1q_u16(data + n * cols + k));
    const float16x8_t b = vreinterpretq_f16_u16(vld1q_u16(data + n * cols + k + 8));
    out[0] = vcvt_f32_f16(vget_low_f16(a)), out[1] = vcvt_high_f32_f16(a);
    out[2] = vcvt_f32_f16(vget_low_f16(b)), out[3] = vcvt_high_f32_f16(b);
  }
  float at(int64_t n, int64_t k) const { return fp16_to_float(data[n * cols + k]); }
  float row_scale(int64_t) const { return 1.0f; }
};

struct Q8Rows {
  const int8_t* data;
  const uint16_t* scales;
  int64_t cols;
  void load(int64_t n, int64_t k, float32x4_t out[4]) const {
    const int8x16_t q = vld1q_s8(data + n * cols + k);
    const int16x8_t low = vmovl_s8(vget_low_s8(q)), high = vmovl_high_s8(q);
    out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(low))), out[1] = vcvtq_f32_s32(vmovl_high_s16(low));
    out[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(high))), out[3] = vcvtq_f32_s32(vmovl_high_s16(high));
  }
  float at(int64_t n, int64_t k) const { return static_cast<float>(data[n * cols + k]); }
  float row_scale(int64_t n) const { return fp16_to_float(scales[n]); }
};

template <typename Rows>
void dense_matvec_rows(const Rows& w, int64_t cols, int64_t n0, int valid, const float* x, float* y) {
  int64_t rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = r < valid ? n0 + r : n0;
  float32x4_t acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    const float32x4_t x0 = vld1q_f32(x + k), x1 = vld1q_f32(x + k + 4), x2 = vld1q_f32(x + k + 8), x3 = vld1q_f32(x + k + 12);
    for (int r = 0; r < kRows; ++r) {
      float32x4_t wv[4];
      w.load(rows[r], k, wv);
      acc[r] = vfmaq_f32(vfmaq_f32(vfmaq_f32(vfmaq_f32(acc[r], wv[0], x0), wv[1], x1), wv[2], x2), wv[3], x3);
    }
  }
  for (int r = 0; r < valid; ++r) {
    float sum = vaddvq_f32(acc[r]);
    for (int64_t tail = k; tail < cols; ++tail) sum += w.at(rows[r], tail) * x[tail];
    y[n0 + r] = sum * w.row_scale(rows[r]);
  }
}

template <typename Rows>
void dense_matvec(const Rows& rows, const LinearWeight& w, const float* x, float* y, ThreadPool& pool) {
  const int64_t blocks = (w.rows + kRows - 1) / kRows;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t n0 = block * kRows;
      dense_matvec_rows(rows, w.cols, n0, static_cast<int>(std::min<int64_t>(kRows, w.rows - n0)), x, y);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Prefill (m >= kMinTiledRows) of the faithful levels: W is dequantized kTileRows rows at a time
// into an fp32 tile (in fp32 order for grouped schemes, x permuted to match), which a 4 x 4
// register-blocked fp32 kernel multiplies with every row of x: the unpacking is paid once per
// tile, not once per token.
// ---------------------------------------------------------------------------------------------
// (q - z) * s in fp32, as the Reference level computes it
template <int T>
void store_dequantized(uint32x4_t q, float32x4_t s, float32x4_t z, float* out) {
  vst1q_f32(out + 4 * T, vmulq_f32(vsubq_f32(nibbles_f32<T>(q), z), s));
}

void dequantize_row_neon(const LinearWeight& w, int64_t n, float* out) {
  const LinearWeight::Layout& layout = *w.layout;
  if (w.scheme.kind != Scheme::Kind::Grouped) return dequantize_row(w, n, out);  // natural order
  const int64_t cols = w.cols, group_size = w.scheme.group_size, groups = cols / group_size;
  const uint8_t* bytes = layout.chunks[(n / kRows) * (cols / 32)].bytes + (n % kRows) * 16;  // + 2k: column k
  const int64_t by4 = (n / kRows) * groups * kRows + n % kRows;                            // + 4j: group j
  for (int64_t j = 0; j < groups; ++j) {
    const float32x4_t s = vdupq_n_f32(fp16_to_float(layout.scales_by4[by4 + kRows * j]));
    const float32x4_t z = vdupq_n_f32(static_cast<float>(layout.zeros_by4[by4 + kRows * j]));
    for (int64_t k = j * group_size; k < (j + 1) * group_size; k += 32) {
      const uint32x4_t q = vld1q_u32(reinterpret_cast<const uint32_t*>(bytes + 2 * k));
      store_dequantized<0>(q, s, z, out + k), store_dequantized<1>(q, s, z, out + k);
      store_dequantized<2>(q, s, z, out + k), store_dequantized<3>(q, s, z, out + k);
      store_dequantized<4>(q, s, z, out + k), store_dequantized<5>(q, s, z, out + k);
      store_dequantized<6>(q, s, z, out + k), store_dequantized<7>(q, s, z, out + k);
    }
  }
}

// y[i][t] = x[i] . tile[t] for MX rows of x and MW rows of the tile (row length and stride K).
template <int MX, int MW>
void tile_block(const float* x, const float* tile, int64_t cols, float* y, int64_t y_stride) {
  float32x4_t acc[MX][MW];
  for (int i = 0; i < MX; ++i)
    for (int t = 0; t < MW; ++t) acc[i][t] = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 4 <= cols; k += 4) {
    float32x4_t wv[MW];
    for (int t = 0; t < MW; ++t) wv[t] = vld1q_f32(tile + t * cols + k);
    for (int i = 0; i < MX; ++i) {
      const float32x4_t xv = vld1q_f32(x + i * cols + k);
      for (int t = 0; t < MW; ++t) acc[i][t] = vfmaq_f32(acc[i][t], xv, wv[t]);
    }
  }
  for (int i = 0; i < MX; ++i) {
    for (int t = 0; t < MW; ++t) {
      float sum = vaddvq_f32(acc[i][t]);
      for (int64_t tail = k; tail < cols; ++tail) sum += x[i * cols + tail] * tile[t * cols + tail];
      y[i * y_stride + t] = sum;
    }
  }
}

// tiled_prefill's block: x_rows (1..4) rows of x times w_rows rows of the tile.
void tile_block_any(int x_rows, int w_rows, const float* x, const float* tile, int64_t cols, float* y,
                    int64_t y_stride) {
  with_count<kTileX>(x_rows, [&](auto mx) {
    with_count<kTileW>(w_rows, [&](auto mw) {
      tile_block<decltype(mx)::value, decltype(mw)::value>(x, tile, cols, y, y_stride);
    });
  });
}

// x (m, K) in the tile's column order; y (m, N).
void tiled_matmul(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  tiled_prefill<kTileRows, kTileX, kTileW>(w, x, m, y, pool, dequantize_row_neon, tile_block_any);
}

void faithful_prefill(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  if (w.scheme.kind != Scheme::Kind::Grouped) return tiled_matmul(w, x, m, y, pool);
  thread_local std::vector<float> x_ordered;
  x_ordered.resize(static_cast<size_t>(m * w.cols));
  for (int64_t k = 0; k < m * w.cols; ++k) x_ordered[k - k % 32 + fp32_position(k % 32)] = x[k];
  tiled_matmul(w, x_ordered.data(), m, y, pool);
}

// ---------------------------------------------------------------------------------------------
// Prefill of neon-dot (m >= kMinTiledRows): 4 rows of W x 4 tokens a step with the lane-indexed
// SDOT, which dots each 32-bit lane of one register with the same 4 bytes of another:
//
//   sdot acc.4s, X.16b, w.4b[l]:   acc[t] += sum_{b<4} X[4t+b] * w[4l+b]    (t = token of the tile)
//
// w is one row's even (AND) or odd (shift) nibbles of a 32-column chunk in int8 order, so its lane
// l holds int8 positions 4l .. 4l+3 (8 of them: quad u = l for even, 4 + l for odd); X_u holds
// the same 4 positions of the 4 tokens' x_q, arranged once a call (QuadX). One chunk of 4 rows:
// 1 load of W (64 bytes), 2 of x (128 bytes), 4 AND + 4 shifts, 32 SDOT for 512 products, and each
// accumulator holds one row's 4 tokens, so a group ends without horizontal sums. Each W chunk is
// read once per 4 tokens (from L1 after the first tile: a block's tiles run back to back).
// The integer sums and the epilogue's fp32 operations are the decode kernel's, in the same order,
// so the results equal token-by-token decoding exactly.
// ---------------------------------------------------------------------------------------------
constexpr int kTileTokens = 4;  // tokens of a neon-dot prefill step (the 4 lanes of an accumulator)

struct QuadX {
  std::vector<int8_t> values;  // (ceil(m/4) tiles, K/32 chunks, 8 quads u, 4 tokens, 4) int8, padding tokens 0
  std::vector<float> scales;   // (tiles, K/g, 4 tokens) x_scale (0 for padding)
  std::vector<int32_t> qsums;  // (tiles, K/g, 4 tokens)
};

void arrange_tokens(const float* x, int64_t m, int64_t cols, int64_t group_size, QuadX& out) {
  const int64_t tiles = (m + kTileTokens - 1) / kTileTokens, groups = cols / group_size;
  out.values.assign(static_cast<size_t>(tiles * kTileTokens * cols), 0);
  out.scales.assign(static_cast<size_t>(tiles * groups * kTileTokens), 0.0f);
  out.qsums.assign(static_cast<size_t>(tiles * groups * kTileTokens), 0);
  PreparedX one;
  for (int64_t i = 0; i < m; ++i) {
    prepare_int8(x + i * cols, cols, group_size, one);
    const int64_t tile = i / kTileTokens, t = i % kTileTokens;
    for (int64_t j = 0; j < groups; ++j) {
      out.scales[(tile * groups + j) * kTileTokens + t] = one.scales[j];
      out.qsums[(tile * groups + j) * kTileTokens + t] = one.qsums[j];
    }
    int8_t* to = out.values.data() + tile * kTileTokens * cols + 4 * t;
    for (int64_t quad = 0; quad < cols / 4; ++quad) std::memcpy(to + quad * 16, one.i8.data() + quad * 4, 4);
  }
}

// acc += the 8 quads of one chunk (x: X_0 .. X_3 even, X_4 .. X_7 odd) times row q's nibbles
AWQ_EDGE_TARGET_DOT inline int32x4_t dot_chunk_row(int32x4_t acc, uint8x16_t q, const int8x16x4_t& x_even,
                                                   const int8x16x4_t& x_odd) {
  const int8x16_t even = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0xF)));
  const int8x16_t odd = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
  acc = vdotq_laneq_s32(acc, x_even.val[0], even, 0);
  acc = vdotq_laneq_s32(acc, x_even.val[1], even, 1);
  acc = vdotq_laneq_s32(acc, x_even.val[2], even, 2);
  acc = vdotq_laneq_s32(acc, x_even.val[3], even, 3);
  acc = vdotq_laneq_s32(acc, x_odd.val[0], odd, 0);
  acc = vdotq_laneq_s32(acc, x_odd.val[1], odd, 1);
  acc = vdotq_laneq_s32(acc, x_odd.val[2], odd, 2);
  return vdotq_laneq_s32(acc, x_odd.val[3], odd, 3);
}

// y of rows n0 .. n0+3 and the 4 tokens of `tile` (rows past N and padding tokens not stored).
template <int kGroup>
AWQ_EDGE_TARGET_DOT void dot_tile(const LinearWeight& w, const QuadX& x, int64_t tile, int64_t n0, int64_t m,
                                  float* y) {
  const RowBlock b = row_block(w, n0);
  const int64_t cols = w.cols, groups = cols / kGroup;
  const uint8_t* wk = b.nibbles;
  const int8_t* xk = x.values.data() + tile * kTileTokens * cols;
  const float* x_scales = x.scales.data() + tile * groups * kTileTokens;
  const int32_t* x_qsums = x.qsums.data() + tile * groups * kTileTokens;
  float32x4_t total[kRows];  // row r: lanes = tokens
  for (int r = 0; r < kRows; ++r) total[r] = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < groups; ++j) {
    int32x4_t acc[kRows];
    for (int r = 0; r < kRows; ++r) acc[r] = vdupq_n_s32(0);
#pragma GCC unroll 1
    for (int c = 0; c < kGroup; c += 32, wk += 64, xk += 128) {  // not unrolled: 30 registers in use
      const uint8x16x4_t q4 = vld1q_u8_x4(wk);
      const int8x16x4_t x_even = vld1q_s8_x4(xk), x_odd = vld1q_s8_x4(xk + 64);
      for (int r = 0; r < kRows; ++r) acc[r] = dot_chunk_row(acc[r], q4.val[r], x_even, x_odd);
    }
    // as the decode kernel, row r and token t: (sum q x_q - z sum x_q) * (s * x_scale), fp32 FMA
    const int32x4_t z = vreinterpretq_s32_u32(group_zeros(b, j));
    const float32x4_t s = group_scales(b, j);
    const int32x4_t qsums = vld1q_s32(x_qsums + j * kTileTokens);
    const float32x4_t scales = vld1q_f32(x_scales + j * kTileTokens);
    total[0] = vfmaq_f32(total[0], vcvtq_f32_s32(vmlsq_laneq_s32(acc[0], qsums, z, 0)), vmulq_laneq_f32(scales, s, 0));
    total[1] = vfmaq_f32(total[1], vcvtq_f32_s32(vmlsq_laneq_s32(acc[1], qsums, z, 1)), vmulq_laneq_f32(scales, s, 1));
    total[2] = vfmaq_f32(total[2], vcvtq_f32_s32(vmlsq_laneq_s32(acc[2], qsums, z, 2)), vmulq_laneq_f32(scales, s, 2));
    total[3] = vfmaq_f32(total[3], vcvtq_f32_s32(vmlsq_laneq_s32(acc[3], qsums, z, 3)), vmulq_laneq_f32(scales, s, 3));
  }
  float out[kRows][kTileTokens];
  for (int r = 0; r < kRows; ++r) vst1q_f32(out[r], total[r]);
  const int tokens = static_cast<int>(std::min<int64_t>(kTileTokens, m - tile * kTileTokens));
  for (int t = 0; t < tokens; ++t) {
    for (int r = 0; r < b.valid; ++r) y[(tile * kTileTokens + t) * w.rows + n0 + r] = out[r][t];
  }
}

void dot_matmul(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  thread_local QuadX arranged_storage;
  arrange_tokens(x, m, w.cols, w.scheme.group_size, arranged_storage);
  const QuadX& arranged = arranged_storage;  // the caller's, not each worker's thread_local
  const int64_t blocks = (w.rows + kRows - 1) / kRows, tiles = (m + kTileTokens - 1) / kTileTokens;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int64_t tile = 0; tile < tiles; ++tile) {
        with_group_size(w.scheme.group_size,
                        [&](auto g) { dot_tile<decltype(g)::value>(w, arranged, tile, block * kRows, m, y); });
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Prefill of neon-i8mm (m >= kMinTiledRows): SMMLA multiplies a 2 x 8 int8 matrix A by an 8 x 2 one
// (given as its 2 columns B0, B1 of 8 bytes) into 2 x 2 int32, 32 products an instruction (a
// lane-indexed SDOT: 16):
//
//   smmla acc.4s, A.16b, B.16b:   acc = | A0.B0  A0.B1 |   A = rows n, n+1 of W (8 columns each)
//                                       | A1.B0  A1.B1 |   B = the same columns of tokens i, i+1
//
// A step is one chunk (4 rows x 32 columns) times 8 tokens: 8 accumulators, row pair p (rows
// 2p, 2p+1) x token pair u. The A operands come from the chunk's bytes (int8 order) by one ZIP of
// two rows' 64-bit halves and an AND or a shift:
//
//   zip1.2d(row 2p, row 2p+1) = bytes 0..7 of both = columns 0..15   & 0xF -> even columns 0..14
//                                                                    >> 4  -> odd columns 1..15
//   zip2.2d(row 2p, row 2p+1) = bytes 8..15 = columns 16..31         & 0xF, >> 4 likewise
//
// These 8-column sets are octets 0, 2, 1, 3 of the int8 order (positions 8o .. 8o+7), so x needs
// no permutation beyond the decode kernel's: each token's x_q is copied 8 bytes at a time into
// (octet, token pair, 2 tokens) blocks once a call (PairX), the octets in the order the kernel
// reads them. One chunk: 1 load of W (64 bytes), 4 of x (256 bytes), 4 ZIP, 4 AND + 4 shifts and
// 32 SMMLA for 1024 products, 51 instructions with the loop (the SDOT tile above: 47 for 512).
// The zips are the price of keeping neon-dot's layout, which neon-i8mm decodes with (4 a chunk
// per 8 tokens; a layout of row pairs would save them but need a decode kernel of its own). The
// last tile of a call holds 2, 4 or 8 tokens (1, 2 or 4 token pairs). A group's accumulators
// start at -z sum x_q, so the integer sums are the decode kernel's, and so is the fp32 epilogue,
// element by element: the results equal token-by-token decoding exactly.
// ---------------------------------------------------------------------------------------------
constexpr int kPairTileTokens = 8;  // tokens of a full neon-i8mm prefill step (4 token pairs)

struct PairX {
  std::vector<int8_t> values;  // tile t at t * 8 * K: (K/32 chunks, octets 0 2 1 3, pairs P, 2 tokens, 8) int8
                               // order; P = 4 but in a short last tile, padding tokens 0
  std::vector<float> scales;   // (tiles, K/g, 4 pairs, {x_scale a, b, a, b}) (0 for padding)
  std::vector<int16_t> neg_qsums;  // (tiles, K/g, 4 pairs, {-sum x_q a, b, a, b}): |sum| <= 127 * 128
};

// Token pairs in the tile that starts at token i0 of m: 4, or 1, 2 or 4 for the last one.
int tile_pairs(int64_t i0, int64_t m) {
  const int64_t left = std::min<int64_t>(kPairTileTokens, m - i0);
  return left <= 2 ? 1 : left <= 4 ? 2 : 4;
}

void pair_tokens(const float* x, int64_t m, int64_t cols, int64_t group_size, PairX& out) {
  const int64_t tiles = (m + kPairTileTokens - 1) / kPairTileTokens, groups = cols / group_size;
  out.values.assign(static_cast<size_t>(tiles * kPairTileTokens * cols), 0);
  out.scales.assign(static_cast<size_t>(tiles * groups * kPairTileTokens * 2), 0.0f);
  out.neg_qsums.assign(static_cast<size_t>(tiles * groups * kPairTileTokens * 2), 0);
  PreparedX one;
  for (int64_t i = 0; i < m; ++i) {
    prepare_int8(x + i * cols, cols, group_size, one);
    const int64_t tile = i / kPairTileTokens, pair = i % kPairTileTokens / 2, slot = i % 2;
    const int pairs = tile_pairs(tile * kPairTileTokens, m);
    for (int64_t j = 0; j < groups; ++j) {
      const int64_t at = ((tile * groups + j) * 4 + pair) * 4 + slot;
      out.scales[at] = out.scales[at + 2] = one.scales[j];
      out.neg_qsums[at] = out.neg_qsums[at + 2] = static_cast<int16_t>(-one.qsums[j]);
    }
    int8_t* to = out.values.data() + tile * kPairTileTokens * cols + pair * 16 + slot * 8;
    for (int64_t octet = 0; octet < cols / 8; ++octet) {
      const int64_t read_as = octet - octet % 4 + octet % 2 * 2 + octet % 4 / 2;  // 0 2 1 3: the kernel's order
      std::memcpy(to + read_as * pairs * 16, one.i8.data() + octet * 8, 8);
    }
  }
}

// acc += SMMLA(a, b). As inline asm because GCC 12 copies the vmmlaq_s32 accumulators between
// registers inside the loop (6 MOVs a chunk).
AWQ_EDGE_TARGET_I8MM inline int32x4_t smmla(int32x4_t acc, int8x16_t a, int8x16_t b) {
  asm("smmla %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
  return acc;
}

// kPairs registers of x: the token pairs of one octet
template <int kPairs>
AWQ_EDGE_TARGET_I8MM inline void load_pairs(const int8_t* from, int8x16_t out[kPairs]) {
  if constexpr (kPairs == 4) {
    const int8x16x4_t v = vld1q_s8_x4(from);
    out[0] = v.val[0], out[1] = v.val[1], out[2] = v.val[2], out[3] = v.val[3];
  } else if constexpr (kPairs == 2) {
    const int8x16x2_t v = vld1q_s8_x2(from);
    out[0] = v.val[0], out[1] = v.val[1];
  } else {
    out[0] = vld1q_s8(from);
  }
}

// y of rows n0 .. n0+3 and the 2 kPairs tokens from i0 (rows past N and padding tokens not stored).
template <int kGroup, int kPairs>
AWQ_EDGE_TARGET_I8MM void i8mm_tile(const LinearWeight& w, const PairX& x, int64_t i0, int64_t n0, int64_t m,
                                    float* y) {
  const RowBlock b = row_block(w, n0);
  const int64_t cols = w.cols, groups = cols / kGroup, tile = i0 / kPairTileTokens;
  const uint8_t* wk = b.nibbles;
  const int8_t* xk = x.values.data() + i0 * cols;
  const float* x_scales = x.scales.data() + tile * groups * 16;
  const int16_t* x_neg_qsums = x.neg_qsums.data() + tile * groups * 16;
  const uint8x16_t low_nibble = vdupq_n_u8(0xF);
  float32x4_t total[2][kPairs];  // row pair p, token pair u: {2p.a, 2p.b, 2p+1.a, 2p+1.b}
  for (int p = 0; p < 2; ++p)
    for (int u = 0; u < kPairs; ++u) total[p][u] = vdupq_n_f32(0.0f);
  for (int64_t j = 0; j < groups; ++j) {
    // The zero-point term first: acc starts at -z sum x_q, so that the group ends with the decode
    // kernel's exact int32 sum q x_q - z sum x_q (and no register clears).
    const uint8x8_t z8 = vreinterpret_u8_u32(vld1_dup_u32(reinterpret_cast<const uint32_t*>(b.zeros + j * kRows)));
    const int16x8_t zz = vreinterpretq_s16_u16(vmovl_u8(vzip1_u8(z8, z8)));  // {z0, z0, z1, z1, z2, z2, z3, z3}
    const int16x4_t z_by_pair[2] = {vget_low_s16(zz), vget_high_s16(zz)};    // {z 2p, z 2p, z 2p+1, z 2p+1}
    int32x4_t acc[2][kPairs];
    for (int u = 0; u < kPairs; ++u) {
      const int16x4_t neg_qsums = vld1_s16(x_neg_qsums + j * 16 + 4 * u);
      for (int p = 0; p < 2; ++p) acc[p][u] = vmull_s16(z_by_pair[p], neg_qsums);
    }
#pragma GCC unroll 1
    for (int c = 0; c < kGroup; c += 32, wk += 64) {
      const uint64x2x4_t q4 = vld1q_u64_x4(reinterpret_cast<const uint64_t*>(wk));
      int8x16_t a[4][2];  // [octet in the kernel's order][row pair]
      for (int p = 0; p < 2; ++p) {
        for (int h = 0; h < 2; ++h) {  // columns 16h .. 16h+15: even ones, then odd ones
          const uint8x16_t rows = vreinterpretq_u8_u64(h == 0 ? vzip1q_u64(q4.val[2 * p], q4.val[2 * p + 1])
                                                              : vzip2q_u64(q4.val[2 * p], q4.val[2 * p + 1]));
          a[2 * h][p] = vreinterpretq_s8_u8(vandq_u8(rows, low_nibble));
          a[2 * h + 1][p] = vreinterpretq_s8_u8(vshrq_n_u8(rows, 4));
        }
      }
      for (int o = 0; o < 4; ++o) {
        int8x16_t xo[kPairs];
        load_pairs<kPairs>(xk, xo), xk += kPairs * 16;
        asm("" : "+r"(xk));  // an opaque step: GCC then post-increments instead of adding offsets
        for (int p = 0; p < 2; ++p)
          for (int u = 0; u < kPairs; ++u) acc[p][u] = smmla(acc[p][u], a[o][p], xo[u]);
      }
    }
    // as the decode kernel, row r and token t: (sum q x_q - z sum x_q) * (s * x_scale), fp32 FMA
    const float32x4_t s = group_scales(b, j);
    const float32x4_t s_by_pair[2] = {vzip1q_f32(s, s), vzip2q_f32(s, s)};
    for (int u = 0; u < kPairs; ++u) {
      const float32x4_t scales = vld1q_f32(x_scales + j * 16 + 4 * u);
      for (int p = 0; p < 2; ++p) {
        total[p][u] = vfmaq_f32(total[p][u], vcvtq_f32_s32(acc[p][u]), vmulq_f32(scales, s_by_pair[p]));
      }
    }
  }
  const int64_t rows = w.rows;
#pragma GCC unroll 4
  for (int u = 0; u < kPairs; ++u) {  // unrolled, or GCC keeps total in memory and stores it every group
    // {row 0, 1, 2, 3} of token a (even lanes of the two row pairs) and of token b (odd lanes)
    const float32x4_t by_token[2] = {vuzp1q_f32(total[0][u], total[1][u]), vuzp2q_f32(total[0][u], total[1][u])};
    for (int t = 0; t < 2; ++t) {
      const int64_t i = i0 + 2 * u + t;
      if (i < m) store_rows(by_token[t], b, y + i * rows + n0);
    }
  }
}

template <int kGroup>
void i8mm_tile_pairs(const LinearWeight& w, const PairX& x, int64_t i0, int64_t n0, int64_t m, float* y) {
  switch (tile_pairs(i0, m)) {
    case 4: return i8mm_tile<kGroup, 4>(w, x, i0, n0, m, y);
    case 2: return i8mm_tile<kGroup, 2>(w, x, i0, n0, m, y);
    default: return i8mm_tile<kGroup, 1>(w, x, i0, n0, m, y);
  }
}

void i8mm_matmul(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  thread_local PairX paired_storage;
  pair_tokens(x, m, w.cols, w.scheme.group_size, paired_storage);
  const PairX& paired = paired_storage;  // the caller's, not each worker's thread_local
  const int64_t blocks = (w.rows + kRows - 1) / kRows;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int64_t i0 = 0; i0 < m; i0 += kPairTileTokens) {  // a block's tiles back to back: W from L1
        with_group_size(w.scheme.group_size,
                        [&](auto g) { i8mm_tile_pairs<decltype(g)::value>(w, paired, i0, block * kRows, m, y); });
      }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// linear_layout.h's entry points
// ---------------------------------------------------------------------------------------------
bool neon_level_supported(KernelLevel level) {
  switch (level) {
    case KernelLevel::NeonFp32: return true;
    case KernelLevel::NeonFp16: return neon_features().fp16;
    case KernelLevel::NeonDot: return neon_features().dotprod;
    case KernelLevel::NeonI8mm: return neon_features().dotprod && neon_features().i8mm;
    default: return false;
  }
}

void pack_neon(const LinearWeight& weight, LinearWeight::Layout& layout) {
  if (weight.scheme.kind != Scheme::Kind::Grouped) return;
  const int64_t groups = weight.cols / weight.scheme.group_size, chunks_per_row = weight.cols / 32;
  const int64_t blocks = (weight.rows + kRows - 1) / kRows;
  const auto* q4 = reinterpret_cast<const uint8_t*>(layout.nibble_weights());  // (N, K/2)
  layout.chunks.assign(static_cast<size_t>(blocks * chunks_per_row), LinearWeight::Layout::NibbleChunk{});
  layout.scales_by4.assign(static_cast<size_t>(blocks * groups * kRows), 0);
  layout.zeros_by4.assign(static_cast<size_t>(blocks * groups * kRows), 0);
  for (int64_t n = 0; n < weight.rows; ++n) {
    LinearWeight::Layout::NibbleChunk* block = layout.chunks.data() + (n / kRows) * chunks_per_row;
    for (int64_t c = 0; c < chunks_per_row; ++c) std::memcpy(block[c].bytes + (n % kRows) * 16, q4 + n * weight.cols / 2 + c * 16, 16);
    for (int64_t j = 0; j < groups; ++j) {
      const int64_t to = ((n / kRows) * groups + j) * kRows + n % kRows;
      layout.scales_by4[to] = layout.scales[n * groups + j];
      layout.zeros_by4[to] = layout.zeros[n * groups + j];
    }
  }
  // Nothing reads the file's layout from here on (pack_linear releases its pages).
  layout.qweight = nullptr, layout.scales = nullptr;
  std::vector<uint8_t>().swap(layout.zeros);
  std::vector<uint32_t>().swap(layout.nibbles);
}

void dequantize_row_neon_grouped(const LinearWeight& weight, int64_t row, float* out) {
  const LinearWeight::Layout& layout = *weight.layout;
  const int64_t groups = weight.cols / weight.scheme.group_size;
  const uint8_t* bytes = layout.chunks[(row / kRows) * (weight.cols / 32)].bytes + (row % kRows) * 16;
  const int64_t by4 = (row / kRows) * groups * kRows + row % kRows;
  for (int64_t k = 0; k < weight.cols; ++k) {
    const int64_t j = k / weight.scheme.group_size;
    const uint8_t byte = bytes[(k / 32) * 64 + (k % 32) / 2];
    const float q = static_cast<float>(k % 2 == 0 ? byte & 0xF : byte >> 4);
    out[k] = (q - static_cast<float>(layout.zeros_by4[by4 + kRows * j])) * fp16_to_float(layout.scales_by4[by4 + kRows * j]);
  }
}

void linear_neon(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t rows = w.rows, cols = w.cols;
  const bool grouped = w.scheme.kind == Scheme::Kind::Grouped;
  const bool int8 = w.level == KernelLevel::NeonDot || w.level == KernelLevel::NeonI8mm;
  if (grouped && w.level == KernelLevel::NeonI8mm && m >= kMinTiledRows) return i8mm_matmul(w, x, m, y, pool);
  if (grouped && w.level == KernelLevel::NeonDot && m >= kMinTiledRows) return dot_matmul(w, x, m, y, pool);
  if (m >= kMinTiledRows && !(grouped && int8)) return faithful_prefill(w, x, m, y, pool);
  thread_local PreparedX prepared;
  for (int64_t i = 0; i < m; ++i) {
    const float* x_row = x + i * cols;
    float* y_row = y + i * rows;
    if (w.scheme.kind == Scheme::Kind::F16) {
      dense_matvec(F16Rows{layout.weight_f16, cols}, w, x_row, y_row, pool);
    } else if (w.scheme.kind == Scheme::Kind::Q8Row) {
      dense_matvec(Q8Rows{layout.weight_q8, layout.scales, cols}, w, x_row, y_row, pool);
    } else if (int8) {
      prepare_int8(x_row, cols, w.scheme.group_size, prepared);
      grouped_matvec<Path::Dot>(w, prepared, y_row, pool);
    } else if (w.level == KernelLevel::NeonFp16) {
      prepare_fp16(x_row, cols, w.scheme.group_size, prepared);
      grouped_matvec<Path::Fp16>(w, prepared, y_row, pool);
    } else {
      prepare_fp32(x_row, cols, w.scheme.group_size, prepared);
      grouped_matvec<Path::Fp32>(w, prepared, y_row, pool);
    }
  }
}

}  // namespace awq_edge::cpu
