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
//   several outputs (the attention's q, k and v projections, one launch): the blocks of output 0
//   come first in the grid, then those of output 1, ...; all read the same prepared x.
//   gated (the MLP's gate and up projections, one launch): the block does the same for the strip
//   of W (gate) and of W2 (up) and writes silu(gate) * up: no gate/up round trip, no extra launch;
//   optionally the last block of each group of y's columns also writes the group's prepared form
//   for the down projection (prepare_completed_group).
#include "fragment_math.h"
#include "kernels.h"
#include "last_block.h"
#include "launch.h"
#include "prepared_activations.h"
#include "strip_pointers.h"

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
  const int tig = lane & 3;
  const int blocks = static_cast<int>(w.blocks), groups = static_cast<int>(w.groups);
  // 32-bit indices from here on: a strip has at most 2^31 / 32 blocks
  const StripPointers lane_strip = strip_pointers(w, strip, lane);
  const uint4* x_lane = x + tig;

  // kDepth tiles in flight per warp: their loads are all issued before the first is used
  for (int base = warp; base < blocks; base += kDepth * warps) {
    uint4 tile[kDepth];
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int b = base + d * warps;
      if (b < blocks) tile[d] = __ldcs(lane_strip.tiles + b * 32);  // streaming: read once per token
    }
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int b = base + d * warps;
      if (b >= blocks) break;
      const int j = b >> w.group_shift;
      const uint2 s = __ldg(lane_strip.scales + j * 8);
      const cuda_layout::ZeroPairs z = cuda_layout::zero_pairs(__ldg(lane_strip.zeros + j * 8));
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

// Picks the output that block `strip` of a launch over several outputs computes, and the strip
// within it (static indices only, so that the outputs stay in the kernel's parameter space).
__device__ __forceinline__ GemvOutput output_of_block(const GemvOutputs& outputs, int64_t& strip) {
  GemvOutput out = outputs.output[0];
#pragma unroll
  for (int i = 1; i < kMaxGemvOutputs; ++i) {
    if (i < outputs.count && strip >= out.w.strips) {
      strip -= out.w.strips;
      out = outputs.output[i];
    }
  }
  return out;
}

// Gated, with outputs.prepared_y: the strip is 32 of the g columns of group strip * 32 / g of y; the
// last of that group's g / 32 blocks to finish (a counter per group, last_block.h) writes the
// group's prepared form for every token (prepared_activations.h).
template <int M>
__device__ __forceinline__ void prepare_completed_group(const GemvOutputs& outputs, int64_t strip) {
  const PreparedOutput& prepared = outputs.prepared_y;
  const GemvOutput& out = outputs.output[0];
  const int strips_per_group = prepared.group_size / 32;
  const int64_t group = strip / strips_per_group, cols = out.w.rows;
  if (!last_block_to_finish(outputs.group_counters + group, static_cast<unsigned>(strips_per_group))) return;
  const int warp = static_cast<int>(threadIdx.x >> 5), warps = static_cast<int>(blockDim.x >> 5);
  for (int t = warp; t < M; t += warps) {
    prepare_group(out.y + t * out.y_stride, group, prepared.group_size, true,
                  reinterpret_cast<__half*>(prepared.data) + t * cols, prepared.multipliers + t * (cols / prepared.group_size));
  }
}

// Not gated: output i = x W_i^T + bias_i, the blocks of output 0 first, then those of 1, ...
// Gated: y = silu(x W^T + bias) * (x W2^T + bias2), W = output 0 (whose y is written), W2 = output 1.
template <int M, bool kGated>
__global__ void __launch_bounds__(256, 1) gemv_q4_kernel(GemvOutputs outputs, const uint4* __restrict__ x,
                                                      const float* __restrict__ multipliers) {
  wait_for_previous_kernels();
  float* warp_sums = dynamic_shared<float>();  // (warps, M, 32 rows), twice when gated
  int64_t strip = blockIdx.x;
  const GemvOutput out = kGated ? outputs.output[0] : output_of_block(outputs, strip);
  float acc[M][4];
  accumulate_strip<M>(out.w, strip, x, multipliers, acc);
  reduce_strip<M>(acc, warp_sums);
  float* warp_sums2 = warp_sums + (blockDim.x >> 5) * M * 32;
  if constexpr (kGated) {
    accumulate_strip<M>(outputs.output[1].w, strip, x, multipliers, acc);
    reduce_strip<M>(acc, warp_sums2);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < M * 32; i += blockDim.x) {
    const int t = i / 32, row = i % 32;
    const int64_t n = strip * 32 + row;
    if (n >= out.w.rows) continue;
    float value = strip_total(warp_sums, M, t, row) + (out.bias != nullptr ? out.bias[n] : 0.0f);
    if constexpr (kGated) {
      const float* bias2 = outputs.output[1].bias;
      const float up = strip_total(warp_sums2, M, t, row) + (bias2 != nullptr ? bias2[n] : 0.0f);
      value = value / (1.0f + __expf(-value)) * up;
    }
    out.y[t * out.y_stride + n] = value;
  }
  if constexpr (kGated) {
    if (outputs.prepared_y.data != nullptr) prepare_completed_group<M>(outputs, strip);
  }
}

template <int M, bool kGated>
void launch(const GemvOutputs& outputs, const uint16_t* prepared, const float* multipliers, int warps,
            cudaStream_t stream) {
  int64_t blocks = outputs.output[0].w.strips;
  if (!kGated) {
    for (int i = 1; i < outputs.count; ++i) blocks += outputs.output[i].w.strips;
  }
  const size_t shared = static_cast<size_t>(warps) * M * 32 * sizeof(float) * (kGated ? 2 : 1);
  launch(kGated ? "gemv_q4 (gated)" : "gemv_q4", gemv_q4_kernel<M, kGated>, static_cast<unsigned>(blocks),
         warps * 32, shared, stream, outputs, reinterpret_cast<const uint4*>(prepared), multipliers);
}

template <bool kGated>
void dispatch(const GemvOutputs& outputs, const uint16_t* prepared, const float* multipliers, int64_t m, int warps,
              cudaStream_t stream) {
  switch (m) {
    case 1: return launch<1, kGated>(outputs, prepared, multipliers, warps, stream);
    case 2: return launch<2, kGated>(outputs, prepared, multipliers, warps, stream);
    case 3: return launch<3, kGated>(outputs, prepared, multipliers, warps, stream);
    case 4: return launch<4, kGated>(outputs, prepared, multipliers, warps, stream);
    case 5: return launch<5, kGated>(outputs, prepared, multipliers, warps, stream);
    case 6: return launch<6, kGated>(outputs, prepared, multipliers, warps, stream);
    case 7: return launch<7, kGated>(outputs, prepared, multipliers, warps, stream);
    case 8: return launch<8, kGated>(outputs, prepared, multipliers, warps, stream);
    default: throw std::invalid_argument("[cuda] gemv_q4 takes 1..8 tokens, got " + std::to_string(m));
  }
}

GemvOutput output(const GroupedWeight& w, const float* bias, const Matrix& y) {
  return GemvOutput{w, bias, y.data, y.stride};
}

}  // namespace

void gemv_q4(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m,
             const float* bias, const Matrix& y, int warps_per_strip, cudaStream_t stream) {
  GemvOutputs outputs;
  outputs.output[0] = output(w, bias, y);
  outputs.count = 1;
  dispatch<false>(outputs, prepared, multipliers, m, warps_per_strip, stream);
}

void gemv_q4_outputs(const GemvOutputs& outputs, const uint16_t* prepared, const float* multipliers, int64_t m,
                     int warps_per_strip, cudaStream_t stream) {
  if (outputs.count < 1 || outputs.count > kMaxGemvOutputs) {
    throw std::invalid_argument("[cuda] gemv_q4_outputs takes 1.." + std::to_string(kMaxGemvOutputs) +
                                " outputs, got " + std::to_string(outputs.count));
  }
  for (int i = 1; i < outputs.count; ++i) {
    if (outputs.output[i].w.cols != outputs.output[0].w.cols ||
        outputs.output[i].w.group_size != outputs.output[0].w.group_size) {
      throw std::invalid_argument("[cuda] gemv_q4_outputs: the weights must share K and the group size");
    }
  }
  dispatch<false>(outputs, prepared, multipliers, m, warps_per_strip, stream);
}

void gemv_q4_gated(const GroupedWeight& gate, const GroupedWeight& up, const uint16_t* prepared,
                   const float* multipliers, int64_t m, const float* gate_bias, const float* up_bias, const Matrix& y,
                   int warps_per_strip, cudaStream_t stream, const PreparedOutput* prepared_y, unsigned* group_counters) {
  GemvOutputs outputs;
  outputs.output[0] = output(gate, gate_bias, y);
  outputs.output[1] = output(up, up_bias, y);
  outputs.count = 2;
  if (prepared_y != nullptr) {
    const int g = prepared_y->group_size;
    if (group_counters == nullptr || (g != 32 && g != 64 && g != 128) || gate.rows % g != 0) {
      throw std::invalid_argument("[cuda] gemv_q4_gated: the prepared output needs group counters and a group size "
                                  "of 32, 64 or 128 that divides N = " + std::to_string(gate.rows) + ", got " +
                                  std::to_string(g));
    }
    outputs.prepared_y = *prepared_y;
    outputs.group_counters = group_counters;
  }
  dispatch<true>(outputs, prepared, multipliers, m, warps_per_strip, stream);
}

}  // namespace awq_edge::cuda
