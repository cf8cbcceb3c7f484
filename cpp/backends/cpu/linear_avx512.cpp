// linear_avx512.cpp: decode (m < kMinTiledRows) of grouped q4/q3 and of q8_row with AVX-512
// (F + BW + VL + VNNI: 32 int16 or 16 fp32 lanes a register, 32 zmm registers). Compiled with
// those flags (CMakeLists.txt); linear.cpp calls it only when the CPU has them. Everything else
// (prefill tiles, f16) is the AVX2 code, called from here.
//
// Grouped schemes: the same numerics as linear_avx2.cpp (x rounded to int16 per quantization
// group, exact integer dot products, the zero point factored out through per-group sums of x),
// with half the instructions a weight. W is read in the q4 layout in place (q3 is widened to it at
// pack time): 64 bytes of a row, 128 columns, are one zmm register, and read as 32 16-bit words
// each word holds 4 columns, nibble s of word u being column 4u + s:
//
//   16-bit lane u          0      1      2     ...   31
//   (word >> 0)  & 0xF     c      c+4    c+8   ...   c+124      times x_q vector 0
//   (word >> 4)  & 0xF     c+1    c+5    c+9   ...   c+125      times x_q vector 1
//   (word >> 8)  & 0xF     c+2    c+6    c+10  ...   c+126      times x_q vector 2
//    word >> 12            c+3    c+7    c+11  ...   c+127      times x_q vector 3
//
// so x_q is permuted once a call into that "block order" (vector s of a block holds
// x_q[c + 4u + s] in lane u), and a block of a row costs 1 load, 3 shifts, 3 ands and 4 vpdpwssd
// (32 int16 products added pairwise into 16 int32 lanes), 13 uops with the scaling below where
// the AVX2 kernel spends about 28. int32 lane p then holds the 8 columns 8p .. 8p+7, so a group
// of g columns is the lanes p with 8p / g equal: a block holds 128 / g groups (one for g = 128,
// halves for 64, quarters for 32). The block's int32 sums are converted once and multiplied by
// s[n][j] * x_scale[j] permuted onto the group's lanes from one zmm of 16 groups' scales. A row
// whose K is not a multiple of 128 ends in a partial block of 32, 64 or 96 columns (masked loads).
//
// q8_row: fp32 FMAs at 512 bits, the AVX2 numerics: the 28 MB LM head of SmolLM2 is bound by
// memory at 3 uops per 16 weights, so int16 x and vpdpwssd would not pay for their rounding.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "linear_layout.h"

namespace awq_edge::cpu {

namespace {

constexpr int kRows = 4;         // rows of W per iteration (each load of x serves 4)
constexpr int kBlock = 128;      // columns of a row in one zmm of nibbles
constexpr int kMinTiledRows = 8;  // as linear_avx2.cpp: from this many rows of x on, its tiled path
// Software prefetch, kPrefetchBytes past the rows of the next iteration: the hardware prefetchers
// alone leave a small matrix read from memory (a decode step's usual case) at about half the speed
// of memory; with it, 576x576 q4 goes from 7 to 15 GB/s on one core (tools/bench_cpu_linear.py
// --cold-mb 64; 2 to 16 KiB all do about as well).
constexpr int64_t kPrefetchBytes = 4096;

// x rounded to int16 per group (linear_layout.h) in block order: block b, vector s, lane u holds
// x_q[128b + 4u + s]; zero padded to whole blocks.
void quantize_x(const float* x, int64_t cols, int group_size, Int16X& out) {
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  round_x_to_int16(x, cols, group_size, blocks * kBlock, out, [](int64_t c) {
    const int64_t within = c % kBlock;
    return c - within + 32 * (within % 4) + within / 4;
  });
}

__mmask16 first_lanes_16(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1);
}

// y[n0 .. n0 + R) for the grouped schemes, R <= kRows rows of W. The groups are taken 16 at a time
// (a "chunk" of 16 g columns, 16 g / 128 blocks): their scales s[n][j] * x_scale[j] are one zmm
// that each block permutes onto its lanes, and their zero-point terms s z xsum are subtracted
// from the accumulator lanes at once.
template <int R, int kGroup>
void grouped_matvec(const LinearWeight& w, const Int16X& x, int64_t n0, float* y) {
  constexpr int kGroupsPerBlock = kBlock / kGroup;
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t cols = w.cols, groups = cols / kGroup;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const uint8_t*>(layout.nibble_weights() + (n0 + r) * cols / 8);
  const int64_t prefetch_ahead = kRows * cols / 2 + kPrefetchBytes;
  const uint16_t* scales = layout.scales + n0 * groups;
  const uint8_t* zeros = layout.zeros.data() + n0 * groups;
  const __m512i low_nibble = _mm512_set1_epi16(0xF);
  // int32 lane p (columns 8p .. 8p+7 of a block) -> its group within the block
  const __m512i group_of_lane =
      _mm512_srli_epi32(_mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120),
                        kGroup == 32 ? 5 : kGroup == 64 ? 6 : 7);

  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t j0 = 0; j0 < groups; j0 += 16) {
    const __mmask16 present = first_lanes_16(groups - j0);
    const __m512 x_scales = _mm512_maskz_loadu_ps(present, x.scales.data() + j0);
    const __m512 x_sums = _mm512_maskz_loadu_ps(present, x.sums.data() + j0);
    __m512 s_lanes[R];  // s[n][j] * x_scale[j] for the chunk's 16 groups
    for (int r = 0; r < R; ++r) {
      const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(present, scales + r * groups + j0));
      const __m512 z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(present, zeros + r * groups + j0)));
      acc[r] = _mm512_fnmadd_ps(_mm512_mul_ps(s, z), x_sums, acc[r]);
      s_lanes[r] = _mm512_mul_ps(s, x_scales);
    }
    const int64_t c0 = j0 * kGroup, chunk_cols = std::min<int64_t>(16, groups - j0) * kGroup;
    for (int64_t c = 0; c < chunk_cols; c += kBlock) {
      // the 16-bit words of the block present: all, or 8, 16 or 24 at the end of a row
      const __mmask32 words = chunk_cols - c >= kBlock ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << ((chunk_cols - c) / 4)) - 1);
      const __m512i lane_group = _mm512_add_epi32(group_of_lane, _mm512_set1_epi32(static_cast<int>(c / kBlock) * kGroupsPerBlock));
      const int16_t* xb = x.values.data() + c0 + c;
      const __m512i x0 = _mm512_loadu_si512(xb), x1 = _mm512_loadu_si512(xb + 32);
      const __m512i x2 = _mm512_loadu_si512(xb + 64), x3 = _mm512_loadu_si512(xb + 96);
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + (c0 + c) / 2 + prefetch_ahead), _MM_HINT_T0);
        const __m512i q = _mm512_maskz_loadu_epi16(words, rows[r] + (c0 + c) / 2);
        __m512i dot = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q, low_nibble), x0);
        dot = _mm512_dpwssd_epi32(dot, _mm512_and_si512(_mm512_srli_epi16(q, 4), low_nibble), x1);
        // nibble 2 of each word is the low nibble of its high byte: a byte shift (a shuffle, not a
        // shift: another execution port than the vpsrlw and vpdpwssd)
        dot = _mm512_dpwssd_epi32(dot, _mm512_and_si512(_mm512_bsrli_epi128(q, 1), low_nibble), x2);
        dot = _mm512_dpwssd_epi32(dot, _mm512_srli_epi16(q, 12), x3);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lane_group, s_lanes[r]), acc[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) y[n0 + r] = _mm512_reduce_add_ps(acc[r]);
}

// y[n0 .. n0 + R) for q8_row: 32 columns a step in two chains a row, then a masked tail.
template <int R>
void q8_matvec(const LinearWeight& w, const float* x, int64_t n0, float* y) {
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t cols = w.cols;
  const int8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = layout.weight_q8 + (n0 + r) * cols;
  const int64_t prefetch_ahead = kRows * cols + kPrefetchBytes;
  auto load = [](const int8_t* p, __mmask16 mask) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p)));
  };
  __m512 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = _mm512_setzero_ps(), acc1[r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= cols; k += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
    for (int r = 0; r < R; ++r) {
      if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(rows[r] + k + prefetch_ahead), _MM_HINT_T0);
      acc0[r] = _mm512_fmadd_ps(load(rows[r] + k, 0xFFFF), x0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(load(rows[r] + k + 16, 0xFFFF), x1, acc1[r]);
    }
  }
  for (; k < cols; k += 16) {
    const __mmask16 mask = first_lanes_16(cols - k);
    const __m512 x0 = _mm512_maskz_loadu_ps(mask, x + k);
    for (int r = 0; r < R; ++r) acc0[r] = _mm512_fmadd_ps(load(rows[r] + k, mask), x0, acc0[r]);
  }
  for (int r = 0; r < R; ++r) {
    y[n0 + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r])) * _cvtsh_ss(layout.scales[n0 + r]);
  }
}

// Rows of y split over threads by blocks of kRows; kernel(R, n) computes y[n .. n + R).
template <typename Kernel>
void matvec_all(const LinearWeight& w, ThreadPool& pool, const Kernel& kernel) {
  const int64_t blocks = (w.rows + kRows - 1) / kRows;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    int64_t n = begin * kRows;
    const int64_t stop = std::min(end * kRows, w.rows);
    for (; n + kRows <= stop; n += kRows) kernel(std::integral_constant<int, kRows>{}, n);
    for (; n < stop; ++n) kernel(std::integral_constant<int, 1>{}, n);
  });
}

template <int kGroup>
void grouped_matvec_all(const LinearWeight& w, const Int16X& x, float* y, ThreadPool& pool) {
  matvec_all(w, pool, [&](auto rows, int64_t n) { grouped_matvec<decltype(rows)::value, kGroup>(w, x, n, y); });
}

}  // namespace

void linear_avx512(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  if (m >= kMinTiledRows || w.scheme.kind == Scheme::Kind::F16) return linear_avx2(w, x, m, y, pool);
  const int64_t rows = w.rows, cols = w.cols;
  for (int64_t i = 0; i < m; ++i) {
    const float* x_row = x + i * cols;
    float* y_row = y + i * rows;
    if (w.scheme.kind == Scheme::Kind::Q8Row) {
      matvec_all(w, pool, [&](auto r, int64_t n) { q8_matvec<decltype(r)::value>(w, x_row, n, y_row); });
      continue;
    }
    thread_local Int16X x_quantized;
    quantize_x(x_row, cols, w.scheme.group_size, x_quantized);
    with_group_size(w.scheme.group_size,
                    [&](auto g) { grouped_matvec_all<decltype(g)::value>(w, x_quantized, y_row, pool); });
  }
}

}  // namespace awq_edge::cpu
