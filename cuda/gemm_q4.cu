// gemm_q4.cu: y (m, N) = x (m, K) W^T for q4 weights and any m (prefill), on the tensor cores with
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (fp16 operands, fp32 accumulation). Two kernels
// with one inner step (accumulate_block: a warp's 64 tokens x 32 rows over one 32-column block):
//
//   per 32-column block and lane (q4_layout.h, fragment_math.h):
//     W:  one 16-byte streaming load = word r for n8 tile r; b_registers turns it into the B
//         operands of both k16 tiles, dequantized to fp16 (q - z) * s (exact q - z, one rounding)
//     x:  for each m16 tile, the prepared (unscaled, permuted) 16 bytes of tokens gid and gid + 8
//         are exactly the A operands of both k16 tiles (a_registers)
//     8 mma per m16 tile: 2 k16 tiles x 4 n8 tiles; accumulator i of a lane is token
//     accumulator_token(lane, i), row 8r + accumulator_column(lane, i)
//
//   fp16 accumulation (multipliers given; tuning gemm_fp16_accumulate, for weights whose scales
//   allow it: q4_layout.h fp16_accumulation_safe): x prepared scaled, each (token, group) in
//   [-1, 1] times its multiplier 2^e; the mma sum into fp16 accumulators
//   (mma...f16.f16.f16.f16, twice the rate of fp32 accumulation on some GPUs) over one group, which
//   fold_group then adds, times each token's multiplier for the group, to the fp32 accumulators:
//     per group and lane: 32 fp16 pairs -> 64 fp32 fma with 8 multipliers (tokens gid, gid + 8 of
//     each m16 tile). A warp folds after the last block of a group it computes (split K: warps
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
//       token t: 4 x 16 bytes at uint4 [4t, 4t + 4)   (lane tig's A operands at 4t + tig)
//     thread i copies uint4 i, i + 32S, ... (tokens >= m: zeros)
//     iteration b: wait for stage b, barrier (stage b complete for all; every warp done with
//     b - 1), start copying block b + kStages - 1 into the stage b - 1 used, compute block b.
#include "async_copy.h"
#include "fragment_math.h"
#include "kernels.h"
#include "launch.h"

#include <cuda_fp16.h>
#if defined(AWQ_EDGE_CUDA_EMULATOR)
#include "tensor_core.h"
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the CUDA backend needs compute capability 8.0 or newer (mma.sync m16n8k16 with fp16): set CMAKE_CUDA_ARCHITECTURES to 80 or above"
#endif

namespace awq_edge::cuda {
namespace {

constexpr int kTokenTiles = 4;               // m16 tiles per warp
constexpr int kTokensPerBlock = 16 * kTokenTiles;

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

using Accumulators = float[kTokenTiles][4][4];         // [m16 tile][n8 tile][accumulator]
using HalfAccumulators = uint32_t[kTokenTiles][4][2];  // [m16 tile][n8 tile][fp16 pair]

// A warp's 64 tokens (from first_token) x 32 rows (its strip) over 32-column block b:
// acc += x W^T, with the block's weight tile q and x's A operands read by load_x(token) (16 bytes);
// Cell: float[4] (fp32 accumulators) or uint32_t[2] (fp16).
template <typename LoadX, typename Cell>
__device__ __forceinline__ void accumulate_block(const GroupedWeight& w, int64_t strip, int b, uint4 q,
                                                 int64_t first_token, int64_t m, LoadX load_x,
                                                 Cell (&acc)[kTokenTiles][4]) {
  const int lane = threadIdx.x & 31, gid = lane >> 2;
  const uint2* scales = reinterpret_cast<const uint2*>(w.scales) + strip * w.groups * 8 + gid;
  const uint32_t* zeros = reinterpret_cast<const uint32_t*>(w.zeros) + strip * w.groups * 8 + gid;
  const int j = b >> w.group_shift;
  const uint2 s = __ldg(scales + j * 8);
  const cuda_layout::ZeroPairs z = cuda_layout::zero_pairs(__ldg(zeros + j * 8));
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
  const uint32_t scale_pair[4] = {(s.x & 0xFFFFu) * 0x00010001u, (s.x >> 16) * 0x00010001u,
                                  (s.y & 0xFFFFu) * 0x00010001u, (s.y >> 16) * 0x00010001u};
  uint32_t b0[4][2], b1[4][2];
#pragma unroll
  for (int r = 0; r < 4; ++r) cuda_layout::b_registers(words[r], z, r, scale_pair[r], b0[r], b1[r]);
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    if (first_token + 16 * t >= m) break;  // the same for the whole warp
    const uint4 xl = load_x(16 * t + gid), xh = load_x(16 * t + gid + 8);
    const uint32_t x_low[4] = {xl.x, xl.y, xl.z, xl.w}, x_high[4] = {xh.x, xh.y, xh.z, xh.w};
    uint32_t a0[4], a1[4];
    cuda_layout::a_registers(x_low, x_high, a0, a1);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      mma_m16n8k16(acc[t][r], a0, b0[r]);
      mma_m16n8k16(acc[t][r], a1, b1[r]);
    }
  }
}

template <typename T, int kCells>
__device__ __forceinline__ void clear(T (&acc)[kTokenTiles][4][kCells]) {
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int i = 0; i < kCells; ++i) acc[t][r][i] = T{0};
}

// fp16 accumulation: the warp's fp16 sums over group j (x scaled by its tokens' multipliers
// (m, groups) for the group) added to acc times those multipliers, and cleared.
__device__ __forceinline__ void fold_group(const float* __restrict__ multipliers, int64_t groups, int64_t j,
                                           int64_t first_token, int64_t m, HalfAccumulators& half,
                                           Accumulators& acc) {
  const int gid = (threadIdx.x & 31) >> 2;
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
    if (first_token + 16 * t >= m) break;  // the same for the whole warp; these sums stayed 0
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t token = first_token + 16 * t + gid + 8 * h;
      const float multiplier = token < m ? __ldg(multipliers + token * groups + j) : 0.0f;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        float low, high;
        cuda_layout::h2_floats(half[t][r][h], low, high);
        acc[t][r][2 * h] = fmaf(low, multiplier, acc[t][r][2 * h]);
        acc[t][r][2 * h + 1] = fmaf(high, multiplier, acc[t][r][2 * h + 1]);
        half[t][r][h] = 0u;
      }
    }
  }
}

// accumulate_block into acc, or with fp16 accumulation into half, folded into acc after the warp's
// last block of the group (next_b: the warp's next block).
template <bool kHalfAccumulate, typename LoadX>
__device__ __forceinline__ void accumulate(const GroupedWeight& w, const float* multipliers, int64_t strip, int b,
                                           int next_b, uint4 q, int64_t first_token, int64_t m, LoadX load_x,
                                           HalfAccumulators& half, Accumulators& acc) {
  if constexpr (kHalfAccumulate) {
    accumulate_block(w, strip, b, q, first_token, m, load_x, half);
    const int j = b >> w.group_shift;
    if (next_b >= w.blocks || (next_b >> w.group_shift) != j) fold_group(multipliers, w.groups, j, first_token, m, half, acc);
  } else {
    accumulate_block(w, strip, b, q, first_token, m, load_x, acc);
  }
}

// y rows of the warp's strip for its 64 tokens, + bias.
__device__ __forceinline__ void store(const GroupedWeight& w, int64_t strip, int64_t first_token, int64_t m,
                                      const float* bias, float* y, int64_t y_stride, const Accumulators& acc) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t token = first_token + 16 * t + cuda_layout::accumulator_token(lane, i);
        const int64_t n = strip * 32 + 8 * r + cuda_layout::accumulator_column(lane, i);
        if (token < m && n < w.rows) y[token * y_stride + n] = acc[t][r][i] + (bias != nullptr ? bias[n] : 0.0f);
      }
    }
  }
}

template <bool kHalfAccumulate>
__global__ void __launch_bounds__(256) gemm_q4_kernel(GroupedWeight w, const uint4* __restrict__ x,
                                                      const float* __restrict__ multipliers, int64_t m,
                                                      const float* __restrict__ bias, float* __restrict__ y,
                                                      int64_t y_stride) {
  float* warp_sums = dynamic_shared<float>();  // (warps - 1, 32 lanes, kTokenTiles * 16)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int tig = lane & 3;
  const int64_t strip = blockIdx.x, first_token = static_cast<int64_t>(blockIdx.y) * kTokensPerBlock;
  const int blocks = static_cast<int>(w.blocks);
  const uint4* tiles = w.words + strip * w.blocks * 32 + lane;

  Accumulators acc;
  HalfAccumulators half;  // fp16 accumulation only
  clear(acc);
  if constexpr (kHalfAccumulate) clear(half);
  for (int b = warp; b < blocks; b += warps) {
    const auto load_x = [&](int token_in_tile) {
      const int64_t token = first_token + token_in_tile;
      return token < m ? __ldg(x + (token * blocks + b) * 4 + tig) : make_uint4(0, 0, 0, 0);
    };
    accumulate<kHalfAccumulate>(w, multipliers, strip, b, b + warps, __ldcs(tiles + b * 32), first_token, m, load_x,
                                half, acc);
  }

  // Sum the warps' accumulators into warp 0's.
  if (warps > 1) {
    if (warp > 0) {
      float* mine = warp_sums + ((warp - 1) * 32 + lane) * (kTokenTiles * 16);
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int i = 0; i < 4; ++i) mine[(t * 4 + r) * 4 + i] = acc[t][r][i];
    }
    __syncthreads();
    if (warp > 0) return;
    for (int v = 0; v < warps - 1; ++v) {
      const float* theirs = warp_sums + (v * 32 + lane) * (kTokenTiles * 16);
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[t][r][i] += theirs[(t * 4 + r) * 4 + i];
    }
  }
  store(w, strip, first_token, m, bias, y, y_stride, acc);
}

constexpr int kStages = 3;                    // x stages in flight (gemm_q4_staged_kernel)
constexpr int kStageUint4s = kTokensPerBlock * 4;  // 64 tokens x 64 bytes

template <int S, bool kHalfAccumulate>
__global__ void __launch_bounds__(S * 32, 1) gemm_q4_staged_kernel(GroupedWeight w, const uint4* __restrict__ x,
                                                                const float* __restrict__ multipliers, int64_t m,
                                                                const float* __restrict__ bias,
                                                                float* __restrict__ y, int64_t y_stride) {
  uint4* stages = dynamic_shared<uint4>();  // (kStages, 64 tokens, 4)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tig = lane & 3;
  const int64_t strip = static_cast<int64_t>(blockIdx.x) * S + warp;
  const int64_t first_token = static_cast<int64_t>(blockIdx.y) * kTokensPerBlock;
  const int blocks = static_cast<int>(w.blocks);
  const bool computes = strip < w.strips;  // the last block's spare warps only copy
  const uint4* tiles = w.words + (computes ? strip : 0) * w.blocks * 32 + lane;

  // Copies x's block b into its stage (every thread its share; zeros past the last token).
  const auto start_copy = [&](int b) {
    if (b < blocks) {
      uint4* stage = stages + (b % kStages) * kStageUint4s;
      for (int i = static_cast<int>(threadIdx.x); i < kStageUint4s; i += S * 32) {
        const int64_t token = first_token + i / 4;
        const bool valid = token < m;
        copy16_async(stage + i, x + ((valid ? token : 0) * blocks + b) * 4 + i % 4, valid);
      }
    }
    commit_copies();  // an empty group past the end keeps the count of groups per iteration fixed
  };
#pragma unroll
  for (int b = 0; b < kStages - 1; ++b) start_copy(b);

  Accumulators acc;
  HalfAccumulators half;  // fp16 accumulation only
  clear(acc);
  if constexpr (kHalfAccumulate) clear(half);
  uint4 q = computes && blocks > 0 ? __ldcs(tiles) : make_uint4(0, 0, 0, 0);
  for (int b = 0; b < blocks; ++b) {
    wait_copies<kStages - 2>();  // this thread's copies of block b are done
    __syncthreads();             // everyone's are, and every warp has finished block b - 1
    start_copy(b + kStages - 1); // into the stage block b - 1 used
    const uint4 q_next = computes && b + 1 < blocks ? __ldcs(tiles + (b + 1) * 32) : make_uint4(0, 0, 0, 0);
    if (computes) {
      const uint4* stage = stages + (b % kStages) * kStageUint4s;
      const auto load_x = [&](int token_in_tile) { return stage[token_in_tile * 4 + tig]; };
      accumulate<kHalfAccumulate>(w, multipliers, strip, b, b + 1, q, first_token, m, load_x, half, acc);
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
  const size_t shared = static_cast<size_t>(warps_per_tile - 1) * 32 * kTokenTiles * 16 * sizeof(float);
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
