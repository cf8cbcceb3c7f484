// gemv_q4.cu: y (m, N) = x (m, K) W^T for q4 weights and 1 <= m <= 8 tokens (decode), reading
// W once. Memory-bound: each weight byte is read once with a streaming (evict-first) 128-bit load.
//
//   grid: one block per strip of 32 rows; block: `warps` warps (1..8) splitting K, warp w takes
//   the 32-column blocks w, w + warps, ... (neighbouring warps read neighbouring 512-byte tiles),
//   loading kDepth = 4 of them before using the first (2 KB in flight per warp)
//
//   per tile and lane (q4_layout.h):   16 bytes of W = 4 rows (8r + gid) x 8 columns
//                                      16 bytes of prepared x per token = the same 8 columns
//                                      8 bytes of scales, 4 bytes of zero points (4 rows)
//   acc[token][r] += lane_row_dot(word r, zeros, r, x, scale r) * multiplier(token, group)
//                    (fp16 up to the scaled sum of the lane's 8 products, then one fp32 fma)
//
//   then: sum over the 4 lanes of a row (shuffles), over the warps (shared memory), + bias.
//
//   gated (the MLP's gate and up projections, one launch): the block does the same for the strip
//   of W (gate) and of W2 (up) and writes silu(gate) * up: no gate/up round trip, no extra launch.
#include "fragment_math.h"
#include "kernels.h"
#include "launch.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kDepth = 4;  // weight tiles (16 bytes per lane each) a warp keeps in flight

// acc[t][r] = the lane's share of token t's dot product with row 8r + gid of `strip`.
template <int M>
__device__ __forceinline__ void accumulate_strip(const GroupedWeight& w, int64_t strip, const uint4* __restrict__ x,
                                                 const float* __restrict__ multipliers, float acc[M][4]) {
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[t][r] = 0.0f;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int blocks = static_cast<int>(w.blocks), groups = static_cast<int>(w.groups);
  // 32-bit indices from here on: a strip has at most 2^31 / 32 blocks
  const uint4* tiles = w.words + strip * w.blocks * 32 + lane;
  const uint2* scales = reinterpret_cast<const uint2*>(w.scales) + strip * w.groups * 8 + gid;
  const uint32_t* zeros = reinterpret_cast<const uint32_t*>(w.zeros) + strip * w.groups * 8 + gid;
  const uint4* x_lane = x + tig;

  // kDepth tiles in flight per warp: their loads are all issued before the first is used
  for (int base = warp; base < blocks; base += kDepth * warps) {
    uint4 tile[kDepth];
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int b = base + d * warps;
      tile[d] = b < blocks ? __ldcs(tiles + b * 32) : make_uint4(0, 0, 0, 0);  // streaming: read once per token
    }
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int b = base + d * warps;
      if (b >= blocks) break;
      const int j = b >> w.group_shift;
      const uint2 s = __ldg(scales + j * 8);
      const cuda_layout::ZeroPairs z = cuda_layout::zero_pairs(__ldg(zeros + j * 8));
      const uint32_t words[4] = {tile[d].x, tile[d].y, tile[d].z, tile[d].w};
      const uint32_t scale2[4] = {s.x, s.x, s.y, s.y};  // row r's fp16 scale: half r % 2
#pragma unroll
      for (int t = 0; t < M; ++t) {
        const uint4 xv = __ldg(x_lane + (t * blocks + b) * 4);
        const uint32_t xs[4] = {xv.x, xv.y, xv.z, xv.w};
        const float multiplier = __ldg(multipliers + t * groups + j);
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[t][r] += cuda_layout::lane_row_dot(words[r], z, r, xs, scale2[r]) * multiplier;
      }
    }
  }
}

// Sums acc over the 4 lanes of each row and over the block's warps: returns, for thread i < M * 32,
// the total of token i / 32, row i % 32 of the strip (after the block's barrier).
template <int M>
__device__ __forceinline__ void reduce_strip(float acc[M][4], float* warp_sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < M; ++t) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float v = acc[t][r];
      v += __shfl_xor_sync(0xFFFFFFFFu, v, 1);
      v += __shfl_xor_sync(0xFFFFFFFFu, v, 2);
      if ((lane & 3) == 0) warp_sums[(warp * M + t) * 32 + cuda_layout::word_row(lane, r)] = v;
    }
  }
}

__device__ __forceinline__ float strip_total(const float* warp_sums, int M, int t, int row) {
  float sum = 0.0f;
  for (int v = 0; v < static_cast<int>(blockDim.x >> 5); ++v) sum += warp_sums[(v * M + t) * 32 + row];
  return sum;
}

// y = x W^T + bias; gated: y = silu(x W^T + bias) * (x W2^T + bias2), W and W2 of one shape.
template <int M, bool kGated>
__global__ void __launch_bounds__(256, 1) gemv_q4_kernel(GroupedWeight w, GroupedWeight w2, const uint4* __restrict__ x,
                                                      const float* __restrict__ multipliers,
                                                      const float* __restrict__ bias, const float* __restrict__ bias2,
                                                      float* __restrict__ y, int64_t y_stride) {
  float* warp_sums = dynamic_shared<float>();  // (warps, M, 32 rows), twice when gated
  const int64_t strip = blockIdx.x;
  float acc[M][4];
  accumulate_strip<M>(w, strip, x, multipliers, acc);
  reduce_strip<M>(acc, warp_sums);
  float* warp_sums2 = warp_sums + (blockDim.x >> 5) * M * 32;
  if constexpr (kGated) {
    accumulate_strip<M>(w2, strip, x, multipliers, acc);
    reduce_strip<M>(acc, warp_sums2);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < M * 32; i += blockDim.x) {
    const int t = i / 32, row = i % 32;
    const int64_t n = strip * 32 + row;
    if (n >= w.rows) continue;
    float value = strip_total(warp_sums, M, t, row) + (bias != nullptr ? bias[n] : 0.0f);
    if constexpr (kGated) {
      const float up = strip_total(warp_sums2, M, t, row) + (bias2 != nullptr ? bias2[n] : 0.0f);
      value = value / (1.0f + __expf(-value)) * up;
    }
    y[t * y_stride + n] = value;
  }
}

template <int M, bool kGated>
void launch(const GroupedWeight& w, const GroupedWeight& w2, const uint16_t* prepared, const float* multipliers,
            const float* bias, const float* bias2, const Matrix& y, int warps, cudaStream_t stream) {
  const size_t shared = static_cast<size_t>(warps) * M * 32 * sizeof(float) * (kGated ? 2 : 1);
  launch(kGated ? "gemv_q4 (gated)" : "gemv_q4", gemv_q4_kernel<M, kGated>, static_cast<unsigned>(w.strips),
         warps * 32, shared, stream, w, w2, reinterpret_cast<const uint4*>(prepared), multipliers, bias, bias2, y.data,
         y.stride);
}

template <bool kGated>
void dispatch(const GroupedWeight& w, const GroupedWeight& w2, const uint16_t* prepared, const float* multipliers,
              int64_t m, const float* bias, const float* bias2, const Matrix& y, int warps, cudaStream_t stream) {
  switch (m) {
    case 1: return launch<1, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 2: return launch<2, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 3: return launch<3, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 4: return launch<4, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 5: return launch<5, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 6: return launch<6, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 7: return launch<7, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    case 8: return launch<8, kGated>(w, w2, prepared, multipliers, bias, bias2, y, warps, stream);
    default: throw std::invalid_argument("[cuda] gemv_q4 takes 1..8 tokens, got " + std::to_string(m));
  }
}

}  // namespace

void gemv_q4(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m,
             const float* bias, const Matrix& y, int warps_per_strip, cudaStream_t stream) {
  dispatch<false>(w, w, prepared, multipliers, m, bias, nullptr, y, warps_per_strip, stream);
}

void gemv_q4_gated(const GroupedWeight& gate, const GroupedWeight& up, const uint16_t* prepared,
                   const float* multipliers, int64_t m, const float* gate_bias, const float* up_bias, const Matrix& y,
                   int warps_per_strip, cudaStream_t stream) {
  dispatch<true>(gate, up, prepared, multipliers, m, gate_bias, up_bias, y, warps_per_strip, stream);
}

}  // namespace awq_edge::cuda
