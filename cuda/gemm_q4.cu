// gemm_q4.cu: y (m, N) = x (m, K) W^T for q4 weights and any m (prefill), on the tensor cores with
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (fp16 operands, fp32 accumulation), computing
// y^T = W x^T: A = 16 rows of W, B = x of 8 tokens. Two kernels with one inner step
// (accumulate_block: a warp's 32 rows x 64 tokens over one 32-column block):
//
//   per 32-column block and lane (q4_layout.h, fragment_math.h):
//     W:  one 16-byte streaming load = words r = 0..3 (rows 8r + gid); scaled_weight_pairs
//         dequantizes each to fp16 (q - z) * s (exact q - z, one rounding) and a_registers makes
//         words 2 rt and 2 rt + 1 the A operands of m16 tile rt for both k16 tiles
//     x:  for each n8 tile t, the prepared (unscaled, permuted) 16 bytes of token 8 t + gid are
//         exactly the B operands of both k16 tiles (b_registers): used where they were loaded,
//         no register moves (with x as A, two tokens' loads had to be interleaved by moves)
//     the 8 loads of x first, then 32 mma: 2 m16 tiles x 8 n8 tiles x 2 k16 tiles; accumulator i
//     of a lane is row 16 rt + accumulator_row(lane, i), token 8 t + accumulator_token(lane, i).
//     Every n8 tile is computed, also past the last token (split K: the last token's row again;
//     x staged: zeros): no branch between the loads and the mma, and those products are never
//     stored.
//
//   fp16 accumulation (multipliers given; tuning gemm_fp16_accumulate, for weights whose scales
//   allow it: q4_layout.h fp16_accumulation_safe): x prepared scaled, each (token, group) in
//   [-1, 1] times its multiplier 2^e; the mma sum into fp16 accumulators
//   (mma...f16.f16.f16.f16, twice the rate of fp32 accumulation on some GPUs) over one group, which
//   fold_group then adds, times each token's multiplier for the group, to the fp32 accumulators:
//     per group and lane: 32 fp16 pairs -> 64 fp32 fma with 16 multipliers (tokens 2 tig, 2 tig + 1
//     of each n8 tile). A warp folds after the last block of a group it computes (split K: warps
//     take every warps-th block, each folds its own share of the group).
//
//   gemm_q4_kernel (split K): grid (strips, tiles of 64 tokens); block: `warps` warps splitting K
//   like gemv_q4, each reading x from global memory (L1/L2); the warps' accumulators are summed in
//   shared memory. Many blocks for small N, but every warp reads its 64 tokens of x itself.
//
//   gemm_q4_staged_kernel<S> (x staged): grid (ceil(strips / S), tiles of 64 tokens); block: S
//   warps, warp w owning strip S * blockIdx.x + w over all of K. x is read from global memory once
//   per block into a ring of kStages shared-memory stages (cp.async), and the S warps read it from
//   there: S times less x traffic from L2 than the split-K kernel.
//
//     stage (4 KB) = x of the block's 64 tokens for one 32-column block, prepared layout:
//       token t: 4 x 16 bytes at uint4 [4t, 4t + 4)   (lane tig's B operands at 4t + tig)
//     thread i copies uint4 i, i + 32S, ... (tokens >= m: zeros), each from a source row it
//     addresses once before the loop
//     iteration b: wait for stage b, barrier (stage b complete for all; every warp done with
//     b - 1), start copying block b + kStages - 1 into the stage b - 1 used, compute block b.
#include "async_copy.h"
#include "fragment_math.h"
#include "kernels.h"
#include "launch.h"
#include "strip_pointers.h"

#include <cuda_fp16.h>
#if defined(AWQ_EDGE_CUDA_EMULATOR)
#include "tensor_core.h"
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the CUDA backend needs compute capability 8.0 or newer (mma.sync m16n8k16 with fp16): set CMAKE_CUDA_ARCHITECTURES to 80 or above"
#endif

namespace awq_edge::cuda {
namespace {

constexpr int kRowTiles = 2;                      // m16 tiles per warp: its strip's 32 rows of W
constexpr int kTokenTiles = 8;                    // n8 tiles per warp
constexpr int kTokensPerBlock = 8 * kTokenTiles;  // a warp's (and a block's) tokens
constexpr int kAccumulatorsPerLane = kRowTiles * kTokenTiles * 4;

// fp32 accumulators c[4]: accumulator i of fragment_math.h.
__device__ __forceinline__ void mma_m16n8k16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::mma_m16n8k16_f32_f16(c, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// fp16 accumulators c[2]: register h holds accumulators 2h, 2h + 1 as an fp16 pair.
__device__ __forceinline__ void mma_m16n8k16(uint32_t c[2], const uint32_t a[4], const uint32_t b[2]) {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::mma_m16n8k16_f16_f16(c, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0, %1}, {%2, %3, %4, %5}, {%6, %7}, {%0, %1};\n"
      : "+r"(c[0]), "+r"(c[1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

using Accumulators = float[kRowTiles][kTokenTiles][4];         // [m16 tile][n8 tile][accumulator]
using HalfAccumulators = uint32_t[kRowTiles][kTokenTiles][2];  // [m16 tile][n8 tile][fp16 pair]

// A warp's 32 rows (its strip, lane_strip) x 64 tokens (from first_token) over 32-column block b:
// acc += W x^T, with the block's weight tile q and x's B operands read by load_x(t) (the lane's 16
// bytes of token 8 t + gid); Cell: float[4] (fp32 accumulators) or uint32_t[2] (fp16).
template <typename LoadX, typename Cell>
__device__ __forceinline__ void accumulate_block(const StripPointers& lane_strip, int group_shift, int b, uint4 q,
                                                 LoadX load_x, Cell (&acc)[kRowTiles][kTokenTiles]) {
  const int j = b >> group_shift;
  const uint2 s = __ldg(lane_strip.scales + j * 8);
  const cuda_layout::ZeroPairs z = cuda_layout::zero_pairs(__ldg(lane_strip.zeros + j * 8));
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
  const uint32_t scale_pair[4] = {(s.x & 0xFFFFu) * 0x00010001u, (s.x >> 16) * 0x00010001u,
                                  (s.y & 0xFFFFu) * 0x00010001u, (s.y >> 16) * 0x00010001u};
  uint32_t a[kRowTiles][2][4];  // [m16 tile][k16 tile]
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt) {
    uint32_t low[4], high[4];
    cuda_layout::scaled_weight_pairs(words[2 * rt], z, 2 * rt, scale_pair[2 * rt], low);
    cuda_layout::scaled_weight_pairs(words[2 * rt + 1], z, 2 * rt + 1, scale_pair[2 * rt + 1], high);
    cuda_layout::a_registers(low, high, a[rt][0], a[rt][1]);
  }
  uint4 xv[kTokenTiles];  // all loaded first, so that their latencies overlap
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) xv[t] = load_x(t);
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    const uint32_t xs[4] = {xv[t].x, xv[t].y, xv[t].z, xv[t].w};
    uint32_t b0[2], b1[2];
    cuda_layout::b_registers(xs, b0, b1);
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
      mma_m16n8k16(acc[rt][t], a[rt][0], b0);
      mma_m16n8k16(acc[rt][t], a[rt][1], b1);
    }
  }
}

template <typename T, int kCells>
__device__ __forceinline__ void clear(T (&acc)[kRowTiles][kTokenTiles][kCells]) {
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
      for (int i = 0; i < kCells; ++i) acc[rt][t][i] = T{0};
}

// The multipliers of a lane's tokens (fp16 accumulation): token first_token + 8 t + 2 tig + e
// (accumulator_token(lane, e) of n8 tile t) has its multiplier for group j at
// base[(8 t + e) * groups + j] when 8 t + e < tokens (else 0: past the last token).
struct LaneMultipliers {
  const float* base;
  int groups, tokens;
};

__device__ __forceinline__ LaneMultipliers lane_multipliers(const float* multipliers, int64_t groups,
                                                           int64_t first_token, int64_t m) {
  const int lane_first = cuda_layout::accumulator_token(threadIdx.x & 31, 0);
  const int64_t tokens = m - first_token < kTokensPerBlock ? m - first_token : kTokensPerBlock;
  return {address_base(multipliers + (first_token + lane_first) * groups), static_cast<int>(groups),
          static_cast<int>(tokens) - lane_first};
}

// fp16 accumulation: the warp's fp16 sums over group j (x scaled by its tokens' multipliers for
// the group) added to acc times those multipliers, and cleared. Every n8 tile, those past the last
// token included: their sums (of the last token's or of zero rows) are cleared per group too.
__device__ __forceinline__ void fold_group(const LaneMultipliers& lane, int j, HalfAccumulators& half,
                                           Accumulators& acc) {
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    float multiplier[2];  // of the lane's two tokens: accumulators 2h and 2h + 1 of every register h
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int token = 8 * t + e;
      multiplier[e] = token < lane.tokens ? __ldg(lane.base + token * lane.groups + j) : 0.0f;
    }
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float low, high;
        cuda_layout::h2_floats(half[rt][t][h], low, high);
        acc[rt][t][2 * h] = fmaf(low, multiplier[0], acc[rt][t][2 * h]);
        acc[rt][t][2 * h + 1] = fmaf(high, multiplier[1], acc[rt][t][2 * h + 1]);
        half[rt][t][h] = 0u;
      }
    }
  }
}

// accumulate_block into acc, or with fp16 accumulation into half, folded into acc after the warp's
// last block of the group (next_b: the warp's next block).
template <bool kHalfAccumulate, typename LoadX>
__device__ __forceinline__ void accumulate(const GroupedWeight& w, const StripPointers& lane_strip,
                                           const LaneMultipliers& multipliers, int b, int next_b, uint4 q,
                                           LoadX load_x, HalfAccumulators& half, Accumulators& acc) {
  if constexpr (kHalfAccumulate) {
    accumulate_block(lane_strip, w.group_shift, b, q, load_x, half);
    const int j = b >> w.group_shift;
    if (next_b >= w.blocks || (next_b >> w.group_shift) != j) fold_group(multipliers, j, half, acc);
  } else {
    accumulate_block(lane_strip, w.group_shift, b, q, load_x, acc);
  }
}

// y rows of the warp's strip for its 64 tokens, + bias.
__device__ __forceinline__ void store(const GroupedWeight& w, int64_t strip, int64_t first_token, int64_t m,
                                      const float* bias, float* y, int64_t y_stride, const Accumulators& acc) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t token = first_token + 8 * t + cuda_layout::accumulator_token(lane, i);
        const int64_t n = strip * 32 + 16 * rt + cuda_layout::accumulator_row(lane, i);
        if (token < m && n < w.rows) y[token * y_stride + n] = acc[rt][t][i] + (bias != nullptr ? bias[n] : 0.0f);
      }
    }
  }
}

template <bool kHalfAccumulate>
__global__ void __launch_bounds__(256) gemm_q4_kernel(GroupedWeight w, const uint4* __restrict__ x,
                                                      const float* __restrict__ multipliers, int64_t m,
                                                      const float* __restrict__ bias, float* __restrict__ y,
                                                      int64_t y_stride) {
  wait_for_previous_kernels();
  float* warp_sums = dynamic_shared<float>();  // (warps - 1, 32 lanes, kAccumulatorsPerLane)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int64_t strip = blockIdx.x, first_token = static_cast<int64_t>(blockIdx.y) * kTokensPerBlock;
  const int blocks = static_cast<int>(w.blocks);
  const StripPointers lane_strip = strip_pointers(w, strip, lane);
  // x's rows of the lane at block 0: token 8 t + gid, or the last token past it (its products are
  // never stored)
  const uint4* x_rows[kTokenTiles];
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    const int64_t token = first_token + 8 * t + (lane >> 2);
    x_rows[t] = address_base(x + (token < m ? token : m - 1) * blocks * 4 + (lane & 3));
  }

  Accumulators acc;
  HalfAccumulators half;  // fp16 accumulation only
  clear(acc);
  if constexpr (kHalfAccumulate) clear(half);
  const LaneMultipliers lane_mult =
      kHalfAccumulate ? lane_multipliers(multipliers, w.groups, first_token, m) : LaneMultipliers{};
  for (int b = warp; b < blocks; b += warps) {
    const auto load_x = [&](int t) { return __ldg(x_rows[t] + b * 4); };
    accumulate<kHalfAccumulate>(w, lane_strip, lane_mult, b, b + warps, __ldcs(lane_strip.tiles + b * 32), load_x,
                                half, acc);
  }

  // Sum the warps' accumulators into warp 0's.
  if (warps > 1) {
    if (warp > 0) {
      float* mine = warp_sums + ((warp - 1) * 32 + lane) * kAccumulatorsPerLane;
#pragma unroll
      for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
        for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
          for (int i = 0; i < 4; ++i) mine[(rt * kTokenTiles + t) * 4 + i] = acc[rt][t][i];
    }
    __syncthreads();
    if (warp > 0) return;
    for (int v = 0; v < warps - 1; ++v) {
      const float* theirs = warp_sums + (v * 32 + lane) * kAccumulatorsPerLane;
#pragma unroll
      for (int rt = 0; rt < kRowTiles; ++rt)
#pragma unroll
        for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[rt][t][i] += theirs[(rt * kTokenTiles + t) * 4 + i];
    }
  }
  store(w, strip, first_token, m, bias, y, y_stride, acc);
}

constexpr int kStages = 3;                    // x stages in flight (gemm_q4_staged_kernel)
constexpr int kStageUint4s = kTokensPerBlock * 4;  // 64 tokens x 64 bytes

// At least 12 warps per SM for S = 2 and 4 with fp32 accumulation (168 registers at most: as many
// warps as before a block's 8 x loads were made to overlap; the fp16 kernels would spill).
constexpr int staged_min_blocks(int S, bool half_accumulate) { return half_accumulate || S >= 8 ? 1 : 12 / S; }

template <int S, bool kHalfAccumulate>
__global__ void __launch_bounds__(S * 32, staged_min_blocks(S, kHalfAccumulate))
    gemm_q4_staged_kernel(GroupedWeight w, const uint4* __restrict__ x, const float* __restrict__ multipliers,
                          int64_t m, const float* __restrict__ bias, float* __restrict__ y, int64_t y_stride) {
  wait_for_previous_kernels();
  uint4* stages = dynamic_shared<uint4>();  // (kStages, 64 tokens, 4)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int64_t strip = static_cast<int64_t>(blockIdx.x) * S + warp;
  const int64_t first_token = static_cast<int64_t>(blockIdx.y) * kTokensPerBlock;
  const int blocks = static_cast<int>(w.blocks);
  const bool computes = strip < w.strips;  // the last block's spare warps only copy
  const StripPointers lane_strip = strip_pointers(w, computes ? strip : 0, lane);

  // This thread's share of a stage: uint4 i = threadIdx.x + 32 S c (token i / 4, piece i % 4), copied
  // from copy_from[c] + 4 b (x at block 0; tokens past the last: zeros).
  constexpr int kCopies = kStageUint4s / (S * 32);
  const uint4* copy_from[kCopies];
  bool copy_valid[kCopies];
#pragma unroll
  for (int c = 0; c < kCopies; ++c) {
    const int i = static_cast<int>(threadIdx.x) + S * 32 * c;
    const int64_t token = first_token + i / 4;
    copy_valid[c] = token < m;
    copy_from[c] = address_base(x + (copy_valid[c] ? token : 0) * blocks * 4 + i % 4);
  }
  // Copies x's block b into its stage.
  const auto start_copy = [&](int b) {
    if (b < blocks) {
      uint4* stage = stages + (b % kStages) * kStageUint4s + threadIdx.x;
#pragma unroll
      for (int c = 0; c < kCopies; ++c) copy16_async(stage + S * 32 * c, copy_from[c] + b * 4, copy_valid[c]);
    }
    commit_copies();  // an empty group past the end keeps the count of groups per iteration fixed
  };
#pragma unroll
  for (int b = 0; b < kStages - 1; ++b) start_copy(b);

  Accumulators acc;
  HalfAccumulators half;  // fp16 accumulation only
  clear(acc);
  if constexpr (kHalfAccumulate) clear(half);
  const LaneMultipliers lane_mult =
      kHalfAccumulate ? lane_multipliers(multipliers, w.groups, first_token, m) : LaneMultipliers{};
  uint4 q = computes && blocks > 0 ? __ldcs(lane_strip.tiles) : make_uint4(0, 0, 0, 0);
  for (int b = 0; b < blocks; ++b) {
    wait_copies<kStages - 2>();  // this thread's copies of block b are done
    __syncthreads();             // everyone's are, and every warp has finished block b - 1
    start_copy(b + kStages - 1); // into the stage block b - 1 used
    const uint4 q_next = computes && b + 1 < blocks ? __ldcs(lane_strip.tiles + (b + 1) * 32) : make_uint4(0, 0, 0, 0);
    if (computes) {
      const uint4* stage = stages + (b % kStages) * kStageUint4s;
      const auto load_x = [&](int t) { return stage[(8 * t + gid) * 4 + tig]; };
      accumulate<kHalfAccumulate>(w, lane_strip, lane_mult, b, b + 1, q, load_x, half, acc);
    }
    q = q_next;
  }
  if (computes) store(w, strip, first_token, m, bias, y, y_stride, acc);
}

template <int S>
void launch_staged(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m,
                   const float* bias, const Matrix& y, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((w.strips + S - 1) / S),
                  static_cast<unsigned>((m + kTokensPerBlock - 1) / kTokensPerBlock));
  const bool fp16 = multipliers != nullptr;
  launch(fp16 ? "gemm_q4 (x staged, fp16 accumulation)" : "gemm_q4 (x staged)",
         fp16 ? gemm_q4_staged_kernel<S, true> : gemm_q4_staged_kernel<S, false>, grid, S * 32,
         kStages * kStageUint4s * sizeof(uint4), stream, w, reinterpret_cast<const uint4*>(prepared), multipliers, m,
         bias, y.data, y.stride);
}

}  // namespace

void gemm_q4(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m, const float* bias,
             const Matrix& y, int warps_per_tile, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(w.strips), static_cast<unsigned>((m + kTokensPerBlock - 1) / kTokensPerBlock));
  const size_t shared = static_cast<size_t>(warps_per_tile - 1) * 32 * kAccumulatorsPerLane * sizeof(float);
  const bool fp16 = multipliers != nullptr;
  launch(fp16 ? "gemm_q4 (fp16 accumulation)" : "gemm_q4", fp16 ? gemm_q4_kernel<true> : gemm_q4_kernel<false>, grid,
         warps_per_tile * 32, shared, stream, w, reinterpret_cast<const uint4*>(prepared), multipliers, m, bias, y.data,
         y.stride);
}

void gemm_q4_staged(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m,
                    const float* bias, const Matrix& y, int strips_per_block, cudaStream_t stream) {
  switch (strips_per_block) {
    case 2: return launch_staged<2>(w, prepared, multipliers, m, bias, y, stream);
    case 4: return launch_staged<4>(w, prepared, multipliers, m, bias, y, stream);
    case 8: return launch_staged<8>(w, prepared, multipliers, m, bias, y, stream);
    default:
      throw std::invalid_argument("[cuda] gemm_q4_staged takes 2, 4 or 8 strips per block, got " +
                                  std::to_string(strips_per_block));
  }
}

}  // namespace awq_edge::cuda
