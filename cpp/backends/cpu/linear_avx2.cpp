// linear_avx2.cpp: y (m, N) = x (m, K) W^T with AVX2 + FMA + F16C (8 fp32 lanes, 16 ymm registers).
// Compiled with -mavx2 -mfma -mf16c (CMakeLists.txt); linear.cpp calls it only when the CPU has them.
//
// Two paths, both split over threads by blocks of output rows:
//
//   m < kMinTiledRows (decode): one matrix-vector product per row of x, streaming W once in its
//     stored form, kRows rows of W at a time so that each load of x serves kRows rows.
//     f16 / q8_row: fp32 FMAs. Grouped: x is rounded to int16 per group and the inner loop is
//     integer multiply-adds (vpmaddwd: 16 products a uop), twice the fp32 path's speed.
//   m >= kMinTiledRows (prefill): W is dequantized kTileRows rows at a time into an fp32 tile
//     (kTileRows x K: 54 KiB for K = 576, 384 KiB for K = 4096; L1/L2) that is multiplied with all
//     m rows of x by a 4 x 3 register-blocked kernel, so the unpacking is paid once per tile, not
//     once per token.
//
// Grouped schemes read W in the q4 layout (q3 is widened to it at pack time): a row is K/2
// bytes, byte b holding column 2b in its low nibble and column 2b+1 in its high nibble. Widening
// bytes to lanes (vpmovzxbd: 8 bytes -> 8 int32, vpmovzxbw: 16 bytes -> 16 int16) gives, for the
// 2L columns c .. c+2L-1 (L = 8 or 16 lanes):
//
//   lane           0     1     2    ...   L-1
//   byte & 0xF     c     c+2   c+4  ...   c+2L-2     (even columns)
//   byte >> 4      c+1   c+3   c+5  ...   c+2L-1     (odd columns)
//
// so instead of shuffling W these kernels work in "nibble order", where every 2L columns are
// stored even ones first: x is permuted once a call into that order (m x K values), and the
// dequantized tiles are written in it. Groups (32..128 columns) are unions of whole blocks of
// 2L columns, so they are the same in both orders.
//
// On the decode path the zero point is factored out:
//   y[n] = sum_j s[n][j] * (sum_{k in j} q[n][k] x[k])  -  sum_j s[n][j] z[n][j] xsum[j]
// with xsum[j] = sum_{k in group j} x[k] computed once a call: the inner loop is q * x only.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "linear_layout.h"

namespace awq_edge::cpu {

namespace {

constexpr int kRows = 4;        // rows of W per matrix-vector iteration (each x load serves 4)
constexpr int kTileRows = 24;   // rows of W dequantized at once on the tiled path
constexpr int kTileXRows = 4;   // register block of the tile kernel: 4 rows of x ...
constexpr int kTileWRows = 3;   // ... times 3 rows of W = 12 accumulators (+ 4 loaded vectors)
constexpr int kMinTiledRows = 8;  // below this many rows of x, m matrix-vector products are faster

float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
  return _mm_cvtss_f32(sum);
}

float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// 8 bytes of a q4 row (16 columns) widened to one byte per int32 lane.
__m256i load_8_bytes(const uint8_t* bytes) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
}

// x (m, K) -> (m, K) in the tiled path's nibble order (L = 8): every 16 values, the even-indexed first.
void permute_to_nibble_order(const float* x, int64_t m, int64_t cols, float* out) {
  for (int64_t i = 0; i < m * cols; i += 16) {
    for (int lane = 0; lane < 8; ++lane) {
      out[i + lane] = x[i + 2 * lane];
      out[i + 8 + lane] = x[i + 2 * lane + 1];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// m < kMinTiledRows: matrix-vector kernels. Each computes y[n0 .. n0 + R) for R <= kRows rows.
// ---------------------------------------------------------------------------------------------

// Decode of grouped schemes: x quantized per group to int16 (x[k] ~ x_scale[j] * x_q[k],
// |x_q| <= 32767, a relative error of at most 1.5e-5 of the group's largest |x|), x_q in nibble
// order with L = 16 (below), so that the inner loop is integer multiply-adds: vpmaddwd multiplies 16 int16 pairs and adds
// neighbours into 8 int32 lanes. 16 bytes of a row (32 columns) widened to 16 uint16 lanes:
//
//   lane           0     1     2    ...   15
//   byte & 0xF     c     c+2   c+4  ...   c+30     x_q[c .. c+16)  holds x[c], x[c+2], ...
//   byte >> 4      c+1   c+3   c+5  ...   c+31     x_q[c+16 .. c+32) holds x[c+1], x[c+3], ...
//
// Per group and row the int32 sum (at most 128 * 15 * 32767 < 2^31) is scaled by s * x_scale.
// x rounded to int16 per group (linear_layout.h), in 32-column nibble order.
void quantize_x(const float* x, int64_t cols, int group_size, Int16X& out) {
  round_x_to_int16(x, cols, group_size, cols, out, [](int64_t c) {
    const int64_t within = c % 32;
    return c - within + (within % 2) * 16 + within / 2;
  });
}

template <int R, int kGroup>
void grouped_matvec(const LinearWeight& w, const Int16X& x, int64_t n0, float* y) {
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t cols = w.cols, groups = cols / kGroup;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const uint8_t*>(layout.nibble_weights() + (n0 + r) * cols / 8);
  const uint16_t* scales = layout.scales + n0 * groups;
  const uint8_t* zeros = layout.zeros.data() + n0 * groups;
  const __m256i low_nibble = _mm256_set1_epi16(0xF);

  __m256 acc[R];
  float zero_terms[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps(), zero_terms[r] = 0.0f;
  for (int64_t j = 0; j < groups; ++j) {
    __m256i dot[R];
    for (int r = 0; r < R; ++r) dot[r] = _mm256_setzero_si256();
    for (int c = 0; c < kGroup; c += 32) {
      const int64_t k = j * kGroup + c;
      const __m256i x_even = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values.data() + k));
      const __m256i x_odd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values.data() + k + 16));
      for (int r = 0; r < R; ++r) {
        const __m256i q = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + k / 2)));
        const __m256i even = _mm256_madd_epi16(_mm256_and_si256(q, low_nibble), x_even);
        const __m256i odd = _mm256_madd_epi16(_mm256_srli_epi16(q, 4), x_odd);
        dot[r] = _mm256_add_epi32(dot[r], _mm256_add_epi32(even, odd));
      }
    }
    for (int r = 0; r < R; ++r) {
      const float scale = half_to_float(scales[r * groups + j]);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r]), _mm256_set1_ps(scale * x.scales[j]), acc[r]);
      zero_terms[r] += scale * static_cast<float>(zeros[r * groups + j]) * x.sums[j];
    }
  }
  for (int r = 0; r < R; ++r) y[n0 + r] = horizontal_sum(acc[r]) - zero_terms[r];
}

// f16 and q8_row: 16 columns a step in two chains a row, then 8, then a scalar tail.
// Weight::load(row, k) gives 8 fp32 weights (unscaled), Weight::at(row, k) one.
struct F16Weights {
  const uint16_t* data;
  int64_t cols;
  __m256 load(int64_t n, int64_t k) const {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + n * cols + k)));
  }
  float at(int64_t n, int64_t k) const { return half_to_float(data[n * cols + k]); }
  float row_scale(int64_t) const { return 1.0f; }
};

struct Q8Weights {
  const int8_t* data;
  const uint16_t* scales;
  int64_t cols;
  __m256 load(int64_t n, int64_t k) const {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(data + n * cols + k));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
  }
  float at(int64_t n, int64_t k) const { return static_cast<float>(data[n * cols + k]); }
  float row_scale(int64_t n) const { return half_to_float(scales[n]); }
};

template <int R, typename Weights>
void dense_matvec(const Weights& w, int64_t cols, const float* x, int64_t n0, float* y) {
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = _mm256_setzero_ps(), acc1[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= cols; k += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + k);
    const __m256 x1 = _mm256_loadu_ps(x + k + 8);
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm256_fmadd_ps(w.load(n0 + r, k), x0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(w.load(n0 + r, k + 8), x1, acc1[r]);
    }
  }
  for (; k + 8 <= cols; k += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + k);
    for (int r = 0; r < R; ++r) acc0[r] = _mm256_fmadd_ps(w.load(n0 + r, k), x0, acc0[r]);
  }
  for (int r = 0; r < R; ++r) {
    float sum = horizontal_sum(_mm256_add_ps(acc0[r], acc1[r]));
    for (int64_t tail = k; tail < cols; ++tail) sum += w.at(n0 + r, tail) * x[tail];
    y[n0 + r] = sum * w.row_scale(n0 + r);
  }
}

// Rows [begin, end) of y = W x, kRows at a time, then one at a time.
template <typename Kernel>
void for_row_blocks(int64_t begin, int64_t end, const Kernel& kernel) {
  int64_t n = begin;
  for (; n + kRows <= end; n += kRows) kernel(std::integral_constant<int, kRows>{}, n);
  for (; n < end; ++n) kernel(std::integral_constant<int, 1>{}, n);
}

template <int kGroup>
void grouped_matvec_all(const LinearWeight& w, const Int16X& x, float* y, ThreadPool& pool) {
  const int64_t blocks = (w.rows + kRows - 1) / kRows;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    for_row_blocks(begin * kRows, std::min(end * kRows, w.rows), [&](auto rows, int64_t n) {
      grouped_matvec<decltype(rows)::value, kGroup>(w, x, n, y);
    });
  });
}

template <typename Weights>
void dense_matvec_all(const Weights& weights, const LinearWeight& w, const float* x, float* y, ThreadPool& pool) {
  const int64_t blocks = (w.rows + kRows - 1) / kRows;
  pool.run(blocks, [&](int64_t begin, int64_t end) {
    for_row_blocks(begin * kRows, std::min(end * kRows, w.rows), [&](auto rows, int64_t n) {
      dense_matvec<decltype(rows)::value>(weights, w.cols, x, n, y);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// m >= kMinTiledRows: dequantize a tile of W, multiply it with every row of x.
// ---------------------------------------------------------------------------------------------

// Row n of W -> out (K fp32), in nibble order for grouped schemes, natural order otherwise.
void dequantize_row_avx2(const LinearWeight& w, int64_t n, float* out) {
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t cols = w.cols;
  switch (w.scheme.kind) {
    case Scheme::Kind::F16:
    case Scheme::Kind::Q8Row: {
      int64_t k = 0;
      if (w.scheme.kind == Scheme::Kind::F16) {
        const F16Weights weights{layout.weight_f16, cols};
        for (; k + 8 <= cols; k += 8) _mm256_storeu_ps(out + k, weights.load(n, k));
        for (; k < cols; ++k) out[k] = weights.at(n, k);
      } else {
        const Q8Weights weights{layout.weight_q8, layout.scales, cols};
        const float scale = weights.row_scale(n);
        for (; k + 8 <= cols; k += 8) _mm256_storeu_ps(out + k, _mm256_mul_ps(weights.load(n, k), _mm256_set1_ps(scale)));
        for (; k < cols; ++k) out[k] = weights.at(n, k) * scale;
      }
      return;
    }
    case Scheme::Kind::Grouped: {
      const int64_t group_size = w.scheme.group_size, groups = cols / group_size;
      const uint8_t* bytes = reinterpret_cast<const uint8_t*>(layout.nibble_weights() + n * cols / 8);
      const __m256i low_nibble = _mm256_set1_epi32(0xF);
      for (int64_t j = 0; j < groups; ++j) {
        const float scale = half_to_float(layout.scales[n * groups + j]);
        const __m256 s = _mm256_set1_ps(scale);
        const __m256 s_z = _mm256_set1_ps(scale * static_cast<float>(layout.zeros[n * groups + j]));
        for (int64_t k = j * group_size; k < (j + 1) * group_size; k += 16) {
          const __m256i q = load_8_bytes(bytes + k / 2);
          _mm256_storeu_ps(out + k, _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, low_nibble)), s, s_z));
          _mm256_storeu_ps(out + k + 8, _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), s, s_z));
        }
      }
      return;
    }
  }
}

// y[i][t] = x[i] . tile[t] for MX rows of x and MW rows of the tile (row length K, strides K);
// y has row stride y_stride.
template <int MX, int MW>
void tile_block(const float* x, const float* tile, int64_t cols, float* y, int64_t y_stride) {
  __m256 acc[MX][MW];
  for (int i = 0; i < MX; ++i)
    for (int t = 0; t < MW; ++t) acc[i][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    __m256 w[MW];
    for (int t = 0; t < MW; ++t) w[t] = _mm256_loadu_ps(tile + t * cols + k);
    for (int i = 0; i < MX; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * cols + k);
      for (int t = 0; t < MW; ++t) acc[i][t] = _mm256_fmadd_ps(xv, w[t], acc[i][t]);
    }
  }
  for (int i = 0; i < MX; ++i) {
    for (int t = 0; t < MW; ++t) {
      float sum = horizontal_sum(acc[i][t]);
      for (int64_t tail = k; tail < cols; ++tail) sum += x[i * cols + tail] * tile[t * cols + tail];
      y[i * y_stride + t] = sum;
    }
  }
}

// tiled_prefill's block: x_rows (1..4) rows of x times w_rows rows of the tile.
void tile_block_any(int x_rows, int w_rows, const float* x, const float* tile, int64_t cols, float* y,
                    int64_t y_stride) {
  with_count<kTileXRows>(x_rows, [&](auto mx) {
    with_count<kTileWRows>(w_rows, [&](auto mw) {
      tile_block<decltype(mx)::value, decltype(mw)::value>(x, tile, cols, y, y_stride);
    });
  });
}

// x (m, K) in the tile's column order; y (m, N).
void tiled_matmul(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  tiled_prefill<kTileRows, kTileXRows, kTileWRows>(w, x, m, y, pool, dequantize_row_avx2, tile_block_any);
}

}  // namespace

void linear_avx2(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const LinearWeight::Layout& layout = *w.layout;
  const int64_t rows = w.rows, cols = w.cols;
  if (m >= kMinTiledRows) {
    if (w.scheme.kind != Scheme::Kind::Grouped) return tiled_matmul(w, x, m, y, pool);
    thread_local std::vector<float> x_nibble;
    x_nibble.resize(static_cast<size_t>(m * cols));
    permute_to_nibble_order(x, m, cols, x_nibble.data());
    return tiled_matmul(w, x_nibble.data(), m, y, pool);
  }
  for (int64_t i = 0; i < m; ++i) {
    const float* x_row = x + i * cols;
    float* y_row = y + i * rows;
    switch (w.scheme.kind) {
      case Scheme::Kind::F16:
        dense_matvec_all(F16Weights{layout.weight_f16, cols}, w, x_row, y_row, pool);
        break;
      case Scheme::Kind::Q8Row:
        dense_matvec_all(Q8Weights{layout.weight_q8, layout.scales, cols}, w, x_row, y_row, pool);
        break;
      case Scheme::Kind::Grouped: {
        thread_local Int16X x_quantized;
        quantize_x(x_row, cols, w.scheme.group_size, x_quantized);
        with_group_size(w.scheme.group_size,
                        [&](auto g) { grouped_matvec_all<decltype(g)::value>(w, x_quantized, y_row, pool); });
        break;
      }
    }
  }
}

}  // namespace awq_edge::cpu
