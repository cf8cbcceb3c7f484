// q4_layout.h: how the CUDA backend stores 4-bit grouped weights and the activations its linear
// kernels read, and the index and bit helpers that the kernels (device), the packer (host) and
// the host unit test (tests/cuda/test_q4_layout.cpp) share. Plain C++17 when not compiled by nvcc.
//
// Weights W (N, K), q4 with group size g (32, 64 or 128; q3 is widened to q4 at upload).
// Rows are cut into strips of 32 (N padded up with zero rows), columns into blocks of 32.
// A (strip, block) tile is 512 bytes: 32 lanes x 16 bytes, exactly the A operands of
// mma.sync.m16n8k16 for that tile (2 m16-tiles x 2 k16-tiles, W as the row-major A), so one
// 128-bit load per lane fetches it, for the matrix-matrix kernel and the matrix-vector kernel alike:
//
//   lane = 4*gid + tig          (gid = lane / 4: mma "groupID", tig = lane % 4: "threadID_in_group")
//   word r (r = 0..3) of lane   = row 8r + gid of the strip   (m16-tile r / 2, A row gid + 8 (r % 2))
//   nibble i (bits 4i..4i+3)    = column 2*tig + 8*(i % 4) + i / 4 of the block
//
//            nibble:  0       1        2        3        4         5         6         7
//            column:  2t      2t+8     2t+16    2t+24    2t+1      2t+9      2t+17     2t+25   (t = tig)
//
//   Pair p (p = 0..3) = nibbles p and p + 4 = columns (2t + 8p, 2t + 8p + 1): neighbours in one k16
//   tile, so pairs 0, 1 are the row's A registers of k16-tile 0 (columns 2t, 2t+1 and 2t+8, 2t+9 of
//   A) and pairs 2, 3 those of k16-tile 1. Pair p sits at bits 4p and 16 + 4p, so
//   (word & 0x000F000F) | 0x64006400 is the fp16 pair (1024 + q, 1024 + q') of pair 0 without any
//   integer conversion (0x6400 is fp16 1024, whose last mantissa bits are the nibble); pair 1 takes
//   the mask 0x00F000F0 (1024 + 16q), pairs 2 and 3 the same from word >> 8 (fragment_math.h).
//
//   tile (s, b) starts at byte 512 * (s * K/32 + b); lanes' 16-byte pieces follow in lane order,
//   so a warp reading one tile reads 512 contiguous bytes.
//
// Scales and zero points, per (strip s, group j), 32 entries in "lane order" e = 4*gid + r (the
// entry of row 8r + gid): scales as fp16 (64 bytes), zeros as bytes (32 bytes). A lane reads its
// 4 rows' scales with one 8-byte load and their zeros with one 4-byte load.
//
// Activations x (m, K), prepared once per linear call from the fp32 activations:
//   fp16, each 32-column block permuted so that lane (gid, tig) finds the 8 values its nibbles
//   pair with in 16 contiguous bytes: position 8*tig + 2p + e holds column 2*tig + 8p + e.
//   (These are also the B registers of mma.m16n8k16 for column (token) gid: {p=0, p=1} for
//   k16-tile 0, {p=2, p=3} for k16-tile 1.)
//   For the matrix-vector kernel each (token, group) is also scaled by a power of two 2^-e into
//   [-1, 1] (exact), so that short fp16 sums of (q - z) * x cannot overflow; x_multiplier (m, K/g)
//   holds 2^e. The matrix-matrix kernel accumulates in fp32 inside the tensor cores and reads
//   x unscaled (multiplier 1), or, with fp16 accumulation (tuning gemm_fp16_accumulate, where
//   fp16_accumulation_safe holds), reads it scaled like the matrix-vector kernel, sums each group
//   in fp16 and adds the group's sums times its multipliers to fp32 accumulators.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AWQ_EDGE_HD __host__ __device__ __forceinline__
#else
#define AWQ_EDGE_HD inline
#endif

namespace awq_edge::cuda_layout {

constexpr int kStripRows = 32;     // rows of W per strip
constexpr int kBlockColumns = 32;  // columns per block
constexpr int kLanes = 32;
constexpr int kTileBytes = 512;    // one (strip, block) tile: kLanes x 16 bytes

AWQ_EDGE_HD int64_t strips(int64_t rows) { return (rows + kStripRows - 1) / kStripRows; }

// Row within the strip held by word r (0..3) of `lane`.
AWQ_EDGE_HD int word_row(int lane, int r) { return 8 * r + (lane >> 2); }

// Column within the block held by nibble i (0..7) of any word of `lane`.
AWQ_EDGE_HD int nibble_column(int lane, int i) { return 2 * (lane & 3) + 8 * (i & 3) + (i >> 2); }

// Where column c (0..31) of a block sits: the lane's tig, and the nibble index in its words.
AWQ_EDGE_HD int column_tig(int c) { return (c & 7) >> 1; }
AWQ_EDGE_HD int column_nibble(int c) { return (c >> 3) + 4 * (c & 1); }

// Position of column c (0..31) in a prepared (permuted) activation block.
AWQ_EDGE_HD int permuted_position(int c) { return 8 * column_tig(c) + 2 * (c >> 3) + (c & 1); }

// Entry (0..31) of row_in_strip in a (strip, group)'s scales and zeros.
AWQ_EDGE_HD int meta_entry(int row_in_strip) { return 4 * (row_in_strip & 7) + (row_in_strip >> 3); }

// Index, in 32-bit words, of word r of `lane` in tile (strip, block) of a matrix with `blocks`
// blocks per row.
AWQ_EDGE_HD int64_t word_index(int64_t strip, int64_t block, int64_t blocks, int lane, int r) {
  return ((strip * blocks + block) * kLanes + lane) * 4 + r;
}

// The 4-bit value at (row, column) of packed weights with `blocks` blocks per row.
AWQ_EDGE_HD uint32_t packed_value(const uint32_t* words, int64_t blocks, int64_t row, int64_t column) {
  const int row_in_strip = static_cast<int>(row % kStripRows);
  const int c = static_cast<int>(column % kBlockColumns);
  const int lane = 4 * (row_in_strip & 7) + column_tig(c);
  const uint32_t word = words[word_index(row / kStripRows, column / kBlockColumns, blocks, lane, row_in_strip >> 3)];
  return (word >> (4 * column_nibble(c))) & 0xFu;
}

// The power of two 2^e >= max_abs by which a group of x is divided (1 when max_abs is 0, inf or nan:
// the group then keeps its values, and an inf or nan shows in the output as it would unscaled).
AWQ_EDGE_HD float group_multiplier(float max_abs) {
  if (!(max_abs > 0.0f) || !(max_abs <= 3.0e38f)) return 1.0f;
  int exponent = 0;
  frexpf(max_abs, &exponent);  // max_abs = f * 2^exponent, f in [0.5, 1)
  return ldexpf(1.0f, exponent);
}

// Whether the matrix-matrix kernel may sum a group's products in fp16: x scaled into [-1, 1] per group
// and |q - z| <= 15 bound a group's partial sums by 15 * group_size * largest_scale, which must stay
// below half of fp16's largest finite value (65504), leaving room for the sums' rounding. Never for an
// inf or nan scale. (For LLM weights, largest_scale is far below the 17 this allows at group size 128.)
AWQ_EDGE_HD bool fp16_accumulation_safe(float largest_scale, int64_t group_size) {
  return 15.0f * static_cast<float>(group_size) * largest_scale <= 32768.0f;
}

}  // namespace awq_edge::cuda_layout
