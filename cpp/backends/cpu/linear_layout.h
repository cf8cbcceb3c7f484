// linear_layout.h: LinearWeight::Layout, the CPU backend's private form of a weight matrix, shared
// by linear.cpp (packing, Reference kernels, dispatch), linear_avx2.cpp (AVX2 kernels) and
// linear_avx512.cpp (AVX-512 decode kernels).
//
// Every scheme keeps the file's tensors in place (views into the memory mapping); packing adds
// only small arrays, and for q3 under AVX2 a nibble copy of the weights:
//
//   f16     weight_f16  (N, K)       fp16                       view
//   q8_row  weight_q8   (N, K)       int8                       view
//           scales      (N,)         fp16                       view
//   q{b}_g  qweight     (N, K*b/32)  u32, b-bit stream per row  view
//           scales      (N, K/g)     fp16                       view
//           zeros       (N, K/g)     u8, one zero point a byte  unpacked from the file's bit stream
//           nibbles     (N, K/8)     u32, 8 values a word, low nibble first: the q4 layout.
//                                    q4: none (nibble_weights() is qweight itself); q3 at every
//                                    level but Reference: the 3-bit values widened to 4 bits at
//                                    pack time.
//
// The NEON levels instead copy grouped weights into their own layout (neon/linear_neon.cpp's
// opening comment): the nibbles of each 4 rows interleaved 16 bytes at a time (chunks), scales
// and zero points interleaved by 4 rows; qweight and scales are then nullptr, zeros and nibbles
// empty, and pack_linear releases the file's pages of the module.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "linear.h"
#include "thread_pool.h"

namespace awq_edge::cpu {

struct LinearWeight::Layout {
  const uint16_t* weight_f16 = nullptr;
  const int8_t* weight_q8 = nullptr;
  const uint32_t* qweight = nullptr;
  const uint16_t* scales = nullptr;
  std::vector<uint8_t> zeros;
  std::vector<uint32_t> nibbles;
  // NEON levels, grouped schemes. The q4 nibbles of rows 4b .. 4b+3, columns 32c .. 32c+31 are
  // chunks[b * K/32 + c] (row r in bytes 16r .. 16r+15, the q4 byte order), padding rows 0: a
  // kernel reads its 4 rows as one stream, one 64-byte load (a cache line) a 32-column step.
  struct alignas(64) NibbleChunk {
    uint8_t bytes[64];
  };
  std::vector<NibbleChunk> chunks;  // (ceil(N/4), K/32) chunks of (4 rows, 16 bytes)
  // Scales and zeros interleaved by 4 rows, (ceil(N/4), K/g, 4), padding rows 0, so the 4 rows a
  // kernel computes read their group's values in one load.
  std::vector<uint16_t> scales_by4;
  std::vector<uint8_t> zeros_by4;

  // The weights in the q4 layout (grouped schemes under AVX2 and AVX512).
  const uint32_t* nibble_weights() const { return nibbles.empty() ? qweight : nibbles.data(); }
};

// Value `index` of a row's b-bit stream (FORMAT.md section 5, "Packing rule").
inline uint32_t read_packed(const uint32_t* row_words, int64_t index, int bits) {
  const uint64_t first_bit = static_cast<uint64_t>(index) * static_cast<uint64_t>(bits);
  const uint64_t word = first_bit / 32;
  const uint32_t shift = first_bit % 32;
  uint64_t window = row_words[word];
  if (shift + bits > 32) window |= static_cast<uint64_t>(row_words[word + 1]) << 32;  // straddles
  return static_cast<uint32_t>(window >> shift) & ((1u << bits) - 1);
}

#if AWQ_EDGE_WITH_NEON
// neon/linear_neon.cpp: whether this CPU runs a NEON level; the NEON part of packing (grouped
// schemes: chunks, scales_by4, zeros_by4 copied from the file's layout, which is then dropped);
// y (m, N) = x (m, K) W^T and dequantize_row for a weight packed at a NEON level.
inline bool is_neon_level(KernelLevel level) {
  return level == KernelLevel::NeonFp32 || level == KernelLevel::NeonFp16 || level == KernelLevel::NeonDot ||
         level == KernelLevel::NeonI8mm;
}
bool neon_level_supported(KernelLevel level);
void pack_neon(const LinearWeight& weight, LinearWeight::Layout& layout);
void linear_neon(const LinearWeight& weight, const float* x, int64_t m, float* y, ThreadPool& pool);
void dequantize_row_neon_grouped(const LinearWeight& weight, int64_t row, float* out);  // natural order
#endif

#if AWQ_EDGE_CPU_AVX2
// linear_avx2.cpp: y (m, N) = x (m, K) W^T for a weight packed at KernelLevel::AVX2 or AVX512.
void linear_avx2(const LinearWeight& weight, const float* x, int64_t m, float* y, ThreadPool& pool);
#endif

#if AWQ_EDGE_CPU_AVX512
// linear_avx512.cpp: the same for a weight packed at KernelLevel::AVX512 (decode of q4/q3/q8_row
// there, the rest handed to linear_avx2).
void linear_avx512(const LinearWeight& weight, const float* x, int64_t m, float* y, ThreadPool& pool);
#endif

// Calls f(std::integral_constant<int, g>{}) for group size g = 32, 64 or 128 (the grouped schemes'),
// so that a kernel templated on the group size is chosen in one place: f(g) uses decltype(g)::value.
template <typename F>
void with_group_size(int64_t group_size, F&& f) {
  switch (group_size) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    default: return f(std::integral_constant<int, 128>{});
  }
}

// Calls f(std::integral_constant<int, n>{}) for a count n = 1..Max (Max <= 4; anything else is
// taken as 1), so that a kernel templated on a block size is chosen in one place.
template <int Max, typename F>
void with_count(int n, F&& f) {
  static_assert(Max >= 1 && Max <= 4, "with_count dispatches 1..4");
  if constexpr (Max >= 4) {
    if (n == 4) return f(std::integral_constant<int, 4>{});
  }
  if constexpr (Max >= 3) {
    if (n == 3) return f(std::integral_constant<int, 3>{});
  }
  if constexpr (Max >= 2) {
    if (n == 2) return f(std::integral_constant<int, 2>{});
  }
  return f(std::integral_constant<int, 1>{});
}

// The prefill of the floating-point SIMD levels (AVX2, NEON fp32/fp16): threads take tiles of
// TileRows rows of W, dequantize each row to fp32 with the level's dequantize_row(w, n, out), and
// multiply the tile with x block by block through the level's register-blocked kernel:
// block(x_rows, w_rows, x, w, cols, y, y_stride) for x_rows <= TileX rows of x and w_rows <= TileW
// rows of the tile. x (m, K) in the column order dequantize_row writes; y (m, N).
template <int TileRows, int TileX, int TileW, typename DequantizeRow, typename Block>
void tiled_prefill(const LinearWeight& w, const float* x, int64_t m, float* y, ThreadPool& pool,
                   const DequantizeRow& dequantize_row, const Block& block) {
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t tiles = (rows + TileRows - 1) / TileRows;
  pool.run(tiles, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(TileRows * cols));
    for (int64_t t0 = begin; t0 < end; ++t0) {
      const int64_t n0 = t0 * TileRows;
      const int tile_rows = static_cast<int>(std::min<int64_t>(TileRows, rows - n0));
      for (int t = 0; t < tile_rows; ++t) dequantize_row(w, n0 + t, tile.data() + t * cols);
      for (int64_t i = 0; i < m; i += TileX) {
        const int x_rows = static_cast<int>(std::min<int64_t>(TileX, m - i));
        for (int t = 0; t < tile_rows; t += TileW) {
          block(x_rows, std::min(tile_rows - t, TileW), x + i * cols, tile.data() + t * cols, cols,
                y + i * rows + n0 + t, rows);
        }
      }
    }
  });
}

// x of one decode call for the integer kernels (AVX2, AVX512), rounded to int16 per quantization
// group: x[k] ~ scales[j] * q[k] with scales[j] = max |x| over group j / 32767, so |q| <= 32767.
struct Int16X {
  std::vector<int16_t> values;  // q, in the kernel's lane order (position(k) below), zero padded
  std::vector<float> scales;    // (K / g)
  std::vector<float> sums;      // (K / g): scales[j] * the sum of group j's q, for the zero points
};

// Rounds x (cols values) into out, q[k] stored at out.values[position(k)] (< padded_size).
template <typename Position>
void round_x_to_int16(const float* x, int64_t cols, int group_size, int64_t padded_size, Int16X& out,
                      const Position& position) {
  const int64_t groups = cols / group_size;
  out.values.assign(static_cast<size_t>(padded_size), 0);
  out.scales.resize(static_cast<size_t>(groups));
  out.sums.resize(static_cast<size_t>(groups));
  for (int64_t j = 0; j < groups; ++j) {
    const float* group = x + j * group_size;
    float largest = 0.0f;
    for (int k = 0; k < group_size; ++k) largest = std::max(largest, std::fabs(group[k]));
    const float inverse = largest > 0.0f ? 32767.0f / largest : 0.0f;
    int32_t sum = 0;
    for (int k = 0; k < group_size; ++k) {
      const int16_t q = static_cast<int16_t>(std::lrintf(group[k] * inverse));
      sum += q;
      out.values[static_cast<size_t>(position(j * group_size + k))] = q;
    }
    out.scales[j] = largest / 32767.0f;
    out.sums[j] = out.scales[j] * static_cast<float>(sum);
  }
}

}  // namespace awq_edge::cpu
