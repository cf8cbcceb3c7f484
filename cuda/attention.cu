// attention.cu: causal attention over the fp16 KV cache, grouped-query, split along the sequence
// (flash-decoding) so that a single token's attention over a long context still fills the GPU.
// The scores never leave registers: each warp keeps a running max, sum and weighted sum of V
// (online softmax), for decode (n = 1) and prefill (n tokens) alike. One kernel per layer: it
// also stores the step's new keys and values in the cache and merges the splits.
//
//   cache (one layer): K and V (capacity, nkv*D) fp16, position p of kv head h at [p][h*D .. h*D+D)
//   q, out: (n, nh*D) fp32; new_k, new_v (when given): (n, nkv*D) fp32, the keys (not yet rotated)
//   and values of positions first_position + [0, n)
//
//   attention_kernel   grid (splits, nkv * head_chunks, token tiles); 4 warps per block
//     a block serves up to 8 query rows that share one kv head, so that K and V are read once
//     for them: row r = head first_head + r % heads of token first_token + r / heads, with
//     heads = the query heads of the kv head (up to 8 per chunk; GQA) and as many tokens as
//     leave room (8 / heads: 8 tokens without GQA, 1 in decode), over the positions
//     [split * span, min(length, (split + 1) * span)) of its last token, each row stopping at its
//     own token (causal); warp w takes P positions at a time (PositionsPerStep: 4 in decode
//     without GQA), begin + wP .. begin + wP + P - 1, then 4P further on, ..., loading their K
//     and V rows before using any; lane l holds elements lE .. lE + E - 1 of the head (E = 1, 2,
//     4 or 8, the power of two >= D / 32), one vector load per row; q.k is reduced across the
//     warp with shuffles, the P positions' reductions interleaved. With rope tables given, q is
//     rotated as it is read (the rotary embedding fused in).
//     New positions (with new_k, new_v): read from new_k (rotated) and new_v, rounded to fp16 as
//     the cache holds them; the blocks of split 0 and head chunk 0 write them into the cache (no
//     other block reads them there in this launch, so no ordering is needed).
//     The 4 warps' (max, sum, weighted V) are merged in shared memory. One split: the block
//     writes out. Several: it writes partial[token][head][split] = (D weighted-V sums, max, sum),
//     and the last block of the (kv head, chunk, token tile) to finish (a counter per group of
//     blocks, last_block.h) merges the splits and writes out: flash-decoding's second pass
//     without a second kernel.
//     With prepared_out, the block that writes output rows also writes their prepared form for
//     the o projection (prepared_activations.h), so that it needs no preparation kernel.
#include "attention_math.h"
#include "kernels.h"
#include "last_block.h"
#include "launch.h"
#include "prepared_activations.h"

#include <algorithm>
#include <cstring>

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerBlock = 8;  // query rows (token, head) that share the block's K and V reads

// The block's query rows: `heads` query heads of one kv head (up to 8) times `tokens` consecutive
// tokens, kRowsPerBlock at most: row r is head first_head + r % heads of token first_token + r / heads.
struct QueryRows {
  int first_head, heads;
  int64_t first_token, tokens;
};

// The key and value of new position first_position + t of one kv head, from new_k (rotated when
// rope tables are given) and new_v.
struct NewPosition {
  const float* key_row;
  const float* value;
  const float* cos_row;
  const float* sin_row;
  int half;
  __device__ __forceinline__ float key(int d) const {
    return cos_row != nullptr ? cuda_layout::rotated(key_row, d, half, cos_row, sin_row) : key_row[d];
  }
};

__device__ __forceinline__ NewPosition new_position(const AttentionArguments& a, int kv_head, int64_t first_position,
                                                    int64_t t) {
  const int half = a.head_dim / 2;
  const int64_t position = first_position + t;
  return NewPosition{a.new_k.data + t * a.new_k.stride + kv_head * a.head_dim,
                     a.new_v.data + t * a.new_v.stride + kv_head * a.head_dim,
                     a.rope_cos != nullptr ? a.rope_cos + position * half : nullptr,
                     a.rope_sin != nullptr ? a.rope_sin + position * half : nullptr, half};
}

// Positions a warp takes per step of its loop, their K and V rows loaded together before any is
// used, so that that many rows are in flight per warp: with one, a decode step's attention waits
// out the memory latency at every position (Little's law: an H100 needs about 2 MB in flight to
// reach its bandwidth, and one 512-byte row per warp is a fraction of that). Fewer where more
// query rows already share each load (GQA, prefill), which also hold more registers.
template <int R>
struct PositionsPerStep {
  static constexpr int value = R == 1 ? 4 : R <= 4 ? 2 : 1;
};

// Elements lane*E .. lane*E + E - 1 of one K or V row, as the fp16 cache holds them: two per word
// (element e in the low (e even) or high half of word e / 2), zeros past D. Kept packed until every
// row of a loop step is loaded: converting at once would wait for each load in turn.
template <int E>
struct HalfRow {
  uint32_t words[(E + 1) / 2];

  __device__ __forceinline__ void put(int e, __half value) {
    uint16_t bits;
    memcpy(&bits, &value, 2);
    if (e % 2 == 0) words[e / 2] = bits;
    else words[e / 2] |= static_cast<uint32_t>(bits) << 16;
  }
  __device__ __forceinline__ void to_floats(float (&out)[E]) const {
#pragma unroll
    for (int i = 0; i < (E + 1) / 2; ++i) {
      __half2 pair;
      memcpy(&pair, &words[i], 4);
      const float2 f = __half22float2(pair);
      out[2 * i] = f.x;
      if (2 * i + 1 < E) out[2 * i + 1] = f.y;
    }
  }
};

// Row `row` of the cache, this lane's elements: one vector load when D % E == 0 (a lane's elements
// then lie all inside the row or all past it, and the load is aligned: row offsets are multiples
// of D), else E scalar loads.
template <int E>
__device__ __forceinline__ HalfRow<E> load_cached_row(const __half* row, int lane, int D, bool whole_vectors) {
  HalfRow<E> h{};
  const int first = lane * E;
  if (first >= D) return h;
  if (!whole_vectors) {
#pragma unroll
    for (int e = 0; e < E; ++e) h.put(e, first + e < D ? row[first + e] : __float2half_rn(0.0f));
  } else if constexpr (E == 1) {
    h.put(0, row[first]);
  } else if constexpr (E == 2) {
    h.words[0] = *reinterpret_cast<const uint32_t*>(row + first);
  } else if constexpr (E == 4) {
    const uint2 w = *reinterpret_cast<const uint2*>(row + first);
    h.words[0] = w.x;
    h.words[1] = w.y;
  } else {
    static_assert(E == 8, "E is 1, 2, 4 or 8");
    const uint4 w = *reinterpret_cast<const uint4*>(row + first);
    h.words[0] = w.x;
    h.words[1] = w.y;
    h.words[2] = w.z;
    h.words[3] = w.w;
  }
  return h;
}

// The cache rows of the block's tokens for its kv head, from new_k and new_v.
__device__ __forceinline__ void store_new_positions(const AttentionArguments& a, int kv_head, int64_t first_position,
                                                    const QueryRows& rows) {
  const int D = a.head_dim;
  const int64_t kv_stride = static_cast<int64_t>(a.n_kv_heads) * D;
  __half* keys = reinterpret_cast<__half*>(a.cache_k) + kv_head * D;
  __half* values = reinterpret_cast<__half*>(a.cache_v) + kv_head * D;
  for (int64_t task = threadIdx.x; task < rows.tokens * D; task += blockDim.x) {
    const int64_t t = rows.first_token + task / D;
    const int d = static_cast<int>(task % D);
    const NewPosition fresh = new_position(a, kv_head, first_position, t);
    keys[(first_position + t) * kv_stride + d] = __float2half_rn(fresh.key(d));
    values[(first_position + t) * kv_stride + d] = __float2half_rn(fresh.value[d]);
  }
}

// With a.prepared_out: the prepared (scaled) form of the block's output rows for the next q4
// linear layer, a warp per group (the host asks for it only when the group size divides the
// head's D, itself a multiple of 32, so a row's groups and 32-column blocks are the head's own).
__device__ __forceinline__ void prepare_output_rows(const AttentionArguments& a, const QueryRows& rows, int active_rows) {
  if (a.prepared_out.data == nullptr) return;
  __syncthreads();  // the block's output rows are visible to the whole block
  const int D = a.head_dim, group_size = a.prepared_out.group_size;
  const int groups_per_row = D / group_size;
  const int64_t cols = a.out.cols, groups = cols / group_size;
  const int warp = static_cast<int>(threadIdx.x >> 5), warps = static_cast<int>(blockDim.x >> 5);
  for (int task = warp; task < active_rows * groups_per_row; task += warps) {
    const int r = task / groups_per_row;
    const int64_t token = rows.first_token + r / rows.heads;
    const int head = rows.first_head + r % rows.heads;
    prepare_group(a.out.data + token * a.out.stride, static_cast<int64_t>(head) * groups_per_row + task % groups_per_row,
                  group_size, true, reinterpret_cast<__half*>(a.prepared_out.data) + token * cols,
                  a.prepared_out.multipliers + token * groups);
  }
}

// E: elements of a head per lane; R: query rows the block holds (a power of two >= its active rows,
// at most kRowsPerBlock), so that the row loop has no exit and its shuffles no condition.
template <int E, int R>
__global__ void __launch_bounds__(kWarps * 32, 1) attention_kernel(AttentionArguments a, int head_chunks,
                                                                int tokens_per_block) {
  wait_for_previous_kernels();
  __shared__ float warp_max[kWarps][R], warp_sum[kWarps][R];
  __shared__ float warp_acc[kWarps][R][E * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int split = blockIdx.x, kv_head = blockIdx.y / head_chunks, chunk = blockIdx.y % head_chunks;
  const int D = a.head_dim, group = a.n_heads / a.n_kv_heads;
  const int64_t n = a.q.rows;
  QueryRows rows;
  rows.first_head = kv_head * group + chunk * kRowsPerBlock;
  rows.heads = min(kRowsPerBlock, group - chunk * kRowsPerBlock);
  rows.first_token = static_cast<int64_t>(blockIdx.z) * tokens_per_block;
  rows.tokens = n - rows.first_token < tokens_per_block ? n - rows.first_token : tokens_per_block;
  const int active_rows = rows.heads * static_cast<int>(rows.tokens);
  const int64_t first_position = *a.first_position;
  // the split's positions for the tile's last token (the longest); earlier tokens stop sooner
  const cuda_layout::PositionRange range =
      cuda_layout::split_positions(first_position, n, a.splits, split, rows.first_token + rows.tokens - 1);
  const int64_t kv_stride = static_cast<int64_t>(a.n_kv_heads) * D;

  float q[R][E], acc[R][E], running_max[R], running_sum[R];
  // row r takes positions < row_end[r]: its own (causal) and the split's (a cache of < 2^31 positions)
  int row_end[R];
  const int half = D / 2;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    running_max[r] = -INFINITY;
    running_sum[r] = 0.0f;
    const int64_t token = rows.first_token + r / rows.heads;
    const int64_t length = first_position + token + 1;
    row_end[r] = r < active_rows ? static_cast<int>(length < range.end ? length : range.end) : 0;
    const float* cos_row = a.rope_cos != nullptr ? a.rope_cos + (first_position + token) * half : nullptr;
    const float* sin_row = a.rope_sin != nullptr ? a.rope_sin + (first_position + token) * half : nullptr;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane * E + e;
      float value = 0.0f;
      if (r < active_rows && d < D) {
        const float* head = a.q.data + token * a.q.stride + (rows.first_head + r % rows.heads) * D;
        // rope fused: rotate pairs (d, d + D/2) as rope_kernel would
        value = cos_row != nullptr ? cuda_layout::rotated(head, d, half, cos_row, sin_row) : head[d];
      }
      q[r][e] = value * a.scale;
      acc[r][e] = 0.0f;
    }
  }
  const bool fresh = a.new_k.data != nullptr;  // this launch's positions come from new_k, new_v
  if (fresh && split == 0 && chunk == 0) store_new_positions(a, kv_head, first_position, rows);
  const __half* keys = reinterpret_cast<const __half*>(a.cache_k) + kv_head * D;
  const __half* values = reinterpret_cast<const __half*>(a.cache_v) + kv_head * D;
  constexpr int P = PositionsPerStep<R>::value;
  const bool whole_vectors = D % E == 0;
  for (int64_t p0 = range.begin + warp * P; p0 < range.end; p0 += kWarps * P) {
    HalfRow<E> key_rows[P], value_rows[P];
#pragma unroll
    for (int i = 0; i < P; ++i) {
      // past the split's end, the split's last position again (no row takes it: row_end), which
      // keeps the loads free of branches
      const int64_t p = p0 + i < range.end ? p0 + i : range.end - 1;
      if (fresh && p >= first_position) {  // the same for the whole warp
        const NewPosition fresh_row = new_position(a, kv_head, first_position, p - first_position);
        key_rows[i] = HalfRow<E>{};
        value_rows[i] = HalfRow<E>{};
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int d = lane * E + e;
          if (d < D) {
            key_rows[i].put(e, __float2half_rn(fresh_row.key(d)));
            value_rows[i].put(e, __float2half_rn(fresh_row.value[d]));
          }
        }
      } else {
        key_rows[i] = load_cached_row<E>(keys + p * kv_stride, lane, D, whole_vectors);
        value_rows[i] = load_cached_row<E>(values + p * kv_stride, lane, D, whole_vectors);
      }
    }
    float k[P][E], v[P][E];
#pragma unroll
    for (int i = 0; i < P; ++i) {
      key_rows[i].to_floats(k[i]);
      value_rows[i].to_floats(v[i]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float score[P];
#pragma unroll
      for (int i = 0; i < P; ++i) {
        score[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) score[i] += q[r][e] * k[i][e];
      }
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) {
#pragma unroll
        for (int i = 0; i < P; ++i) score[i] += __shfl_xor_sync(0xFFFFFFFFu, score[i], offset);
      }
#pragma unroll
      for (int i = 0; i < P; ++i) {
        if (p0 + i < row_end[r]) {  // causal and inside the split (after the shuffles)
          const cuda_layout::SoftmaxStep step =
              cuda_layout::online_softmax_step(running_max[r], running_sum[r], score[i]);
#pragma unroll
          for (int e = 0; e < E; ++e) acc[r][e] = acc[r][e] * step.correction + step.weight * v[i][e];
        }
      }
    }
  }
  if (lane == 0) {
    for (int r = 0; r < R; ++r) {
      warp_max[warp][r] = running_max[r];
      warp_sum[warp][r] = running_sum[r];
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int e = 0; e < E; ++e) warp_acc[warp][r][lane * E + e] = acc[r][e];
  __syncthreads();

  // the block's result per row and element: the warps merged (d < D: weighted V; D: max; D + 1: sum)
  const auto block_result = [&](int r, int d) {
    float block_max = -INFINITY;
    for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_max[w][r]);
    if (d == D) return block_max;
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float factor = cuda_layout::merge_factor(warp_max[w][r], block_max);  // 0: the warp saw no position
      total += factor * (d < D ? warp_acc[w][r][d] : warp_sum[w][r]);
    }
    return total;
  };
  const auto output_row = [&](int r) {
    return a.out.data + (rows.first_token + r / rows.heads) * a.out.stride + (rows.first_head + r % rows.heads) * D;
  };
  if (a.splits == 1) {  // the block saw every position of its rows
    for (int task = threadIdx.x; task < active_rows * D; task += blockDim.x) {
      const int r = task / D, d = task % D;
      output_row(r)[d] = block_result(r, d) / block_result(r, D + 1);
    }
    prepare_output_rows(a, rows, active_rows);
    return;
  }
  const auto partial_row = [&](int r) {
    const int64_t token = rows.first_token + r / rows.heads;
    const int head = rows.first_head + r % rows.heads;
    return a.partial + (token * a.n_heads + head) * a.splits * (D + 2);
  };
  for (int task = threadIdx.x; task < active_rows * (D + 2); task += blockDim.x) {
    const int r = task / (D + 2), d = task % (D + 2);
    partial_row(r)[split * (D + 2) + d] = block_result(r, d);
  }

  // The last block of these rows to finish merges the splits.
  if (!last_block_to_finish(a.split_counters + blockIdx.y * gridDim.z + blockIdx.z, static_cast<unsigned>(a.splits))) {
    return;
  }
  for (int task = threadIdx.x; task < active_rows * D; task += blockDim.x) {
    const int r = task / D, d = task % D;
    const float* partial = partial_row(r);
    float overall_max = -INFINITY;
    for (int s = 0; s < a.splits; ++s) overall_max = fmaxf(overall_max, __ldcg(partial + s * (D + 2) + D));
    float numerator = 0.0f, denominator = 0.0f;
    for (int s = 0; s < a.splits; ++s) {
      const float* part = partial + s * (D + 2);
      const float factor = cuda_layout::merge_factor(__ldcg(part + D), overall_max);  // 0: past this token's length
      numerator += factor * __ldcg(part + d);
      denominator += factor * __ldcg(part + D + 1);
    }
    output_row(r)[d] = numerator / denominator;
  }
  prepare_output_rows(a, rows, active_rows);
}

template <int R>
void launch_attention(const AttentionArguments& a, dim3 grid, int head_chunks, int tokens_per_block,
                      cudaStream_t stream) {
  auto* kernel = a.head_dim <= 32 ? attention_kernel<1, R> : a.head_dim <= 64 ? attention_kernel<2, R>
               : a.head_dim <= 128 ? attention_kernel<4, R> : attention_kernel<8, R>;
  launch("attention", kernel, grid, kWarps * 32, 0, stream, a, head_chunks, tokens_per_block);
}

// The launch's shape for n tokens: head chunks per kv head and tokens per block.
struct AttentionGrid {
  int head_chunks, tokens_per_block, rows;
  unsigned token_tiles;
};

AttentionGrid attention_grid(int64_t n, int n_heads, int n_kv_heads) {
  AttentionGrid g;
  const int group = n_heads / n_kv_heads;
  g.head_chunks = (group + kRowsPerBlock - 1) / kRowsPerBlock;
  // prefill: as many tokens per block as leave rows for the heads of a chunk (8 / heads), so that
  // one read of K and V serves up to 8 query rows also without GQA
  const int heads_per_chunk = group < kRowsPerBlock ? group : kRowsPerBlock;
  g.tokens_per_block = static_cast<int>(std::min<int64_t>(kRowsPerBlock / heads_per_chunk, n));
  g.rows = heads_per_chunk * g.tokens_per_block;
  g.token_tiles = static_cast<unsigned>((n + g.tokens_per_block - 1) / g.tokens_per_block);
  return g;
}

}  // namespace

int64_t attention_split_counters(int64_t n, int n_heads, int n_kv_heads) {
  const AttentionGrid g = attention_grid(n, n_heads, n_kv_heads);
  return static_cast<int64_t>(n_kv_heads) * g.head_chunks * g.token_tiles;
}

void attention(const AttentionArguments& a, cudaStream_t stream) {
  if (a.head_dim > kMaxHeadDim || a.head_dim % 2 != 0) {
    throw std::invalid_argument("[cuda] attention: head_dim " + std::to_string(a.head_dim) +
                                " is not supported (even, at most " + std::to_string(kMaxHeadDim) + ")");
  }
  if (a.splits > 1 && (a.partial == nullptr || a.split_counters == nullptr)) {
    throw std::invalid_argument("[cuda] attention: " + std::to_string(a.splits) +
                                " splits need the partial and split_counters scratch buffers");
  }
  if (a.prepared_out.data != nullptr &&
      (a.head_dim % 32 != 0 || a.prepared_out.group_size < 32 || a.head_dim % a.prepared_out.group_size != 0)) {
    throw std::invalid_argument("[cuda] attention: the prepared output needs a head_dim that is a multiple of 32 and "
                                "of the group size, got head_dim " + std::to_string(a.head_dim) + " and group size " +
                                std::to_string(a.prepared_out.group_size));
  }
  const AttentionGrid g = attention_grid(a.q.rows, a.n_heads, a.n_kv_heads);
  const dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(a.n_kv_heads * g.head_chunks), g.token_tiles);
  if (g.rows <= 1) launch_attention<1>(a, grid, g.head_chunks, g.tokens_per_block, stream);
  else if (g.rows <= 2) launch_attention<2>(a, grid, g.head_chunks, g.tokens_per_block, stream);
  else if (g.rows <= 4) launch_attention<4>(a, grid, g.head_chunks, g.tokens_per_block, stream);
  else launch_attention<kRowsPerBlock>(a, grid, g.head_chunks, g.tokens_per_block, stream);
}

}  // namespace awq_edge::cuda
