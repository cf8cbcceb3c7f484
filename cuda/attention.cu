// attention.cu: causal attention over the fp16 KV cache, grouped-query, split along the sequence
// (flash-decoding) so that a single token's attention over a long context still fills the GPU.
// The scores never leave registers: each warp keeps a running max, sum and weighted sum of V
// (online softmax), for decode (n = 1) and prefill (n tokens) alike.
//
//   cache (one layer): K and V (capacity, nkv*D) fp16, position p of kv head h at [p][h*D .. h*D+D)
//   q, out: (n, nh*D) fp32
//
//   attention_kernel   grid (splits, nkv * head_chunks, n); 4 warps per block
//     a block serves up to 8 query heads that share one kv head (GQA: K and V are read once for
//     them) over positions [split * span, min(length, (split + 1) * span)) of one token;
//     warp w takes positions begin + w, begin + w + 4, ...; lane l holds elements l + 32e of the
//     head (E = ceil(D / 32) per lane); q.k is reduced across the warp with shuffles.
//     The 4 warps' (max, sum, weighted V) are merged in shared memory and written to
//     partial[token][head][split] = (D weighted-V sums, max, sum).
//     With rope tables given, q is rotated as it is read (the rotary embedding fused in).
//   combine_kernel     grid (n, nh): merges the splits and normalises.
#include "attention_math.h"
#include "kernels.h"
#include "launch.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kHeadsPerBlock = 8;

template <int E>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(AttentionArguments a, int head_chunks) {
  __shared__ float warp_max[kWarps][kHeadsPerBlock], warp_sum[kWarps][kHeadsPerBlock];
  __shared__ float warp_acc[kWarps][kHeadsPerBlock][E * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int split = blockIdx.x, kv_head = blockIdx.y / head_chunks, chunk = blockIdx.y % head_chunks;
  const int64_t token = blockIdx.z;
  const int D = a.head_dim, group = a.n_heads / a.n_kv_heads;
  const int first_head = kv_head * group + chunk * kHeadsPerBlock;
  const int heads = min(kHeadsPerBlock, group - chunk * kHeadsPerBlock);
  const int64_t first_position = *a.first_position;
  const cuda_layout::PositionRange range = cuda_layout::split_positions(first_position, a.q.rows, a.splits, split, token);
  const int64_t kv_stride = static_cast<int64_t>(a.n_kv_heads) * D;

  float q[kHeadsPerBlock][E], acc[kHeadsPerBlock][E], running_max[kHeadsPerBlock], running_sum[kHeadsPerBlock];
  const int half = D / 2;
  const float* cos_row = a.rope_cos != nullptr ? a.rope_cos + (first_position + token) * half : nullptr;
  const float* sin_row = a.rope_sin != nullptr ? a.rope_sin + (first_position + token) * half : nullptr;
#pragma unroll
  for (int g = 0; g < kHeadsPerBlock; ++g) {
    running_max[g] = -INFINITY;
    running_sum[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane + 32 * e;
      float value = 0.0f;
      if (g < heads && d < D) {
        const float* head = a.q.data + token * a.q.stride + (first_head + g) * D;
        value = head[d];
        if (cos_row != nullptr) {  // rope fused: rotate pairs (d, d + D/2) as rope_kernel would
          const int pair = d < half ? d : d - half;
          value = d < half ? value * cos_row[pair] - head[d + half] * sin_row[pair]
                           : value * cos_row[pair] + head[d - half] * sin_row[pair];
        }
      }
      q[g][e] = value * a.scale;
      acc[g][e] = 0.0f;
    }
  }
  const __half* keys = reinterpret_cast<const __half*>(a.cache_k) + kv_head * D;
  const __half* values = reinterpret_cast<const __half*>(a.cache_v) + kv_head * D;
  for (int64_t p = range.begin + warp; p < range.end; p += kWarps) {
    float k[E], v[E];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane + 32 * e;
      k[e] = d < D ? __half2float(keys[p * kv_stride + d]) : 0.0f;
      v[e] = d < D ? __half2float(values[p * kv_stride + d]) : 0.0f;
    }
#pragma unroll
    for (int g = 0; g < kHeadsPerBlock; ++g) {
      if (g >= heads) break;
      float score = 0.0f;
#pragma unroll
      for (int e = 0; e < E; ++e) score += q[g][e] * k[e];
      for (int offset = 16; offset > 0; offset /= 2) score += __shfl_xor_sync(0xFFFFFFFFu, score, offset);
      const cuda_layout::SoftmaxStep step = cuda_layout::online_softmax_step(running_max[g], running_sum[g], score);
#pragma unroll
      for (int e = 0; e < E; ++e) acc[g][e] = acc[g][e] * step.correction + step.weight * v[e];
    }
  }
  if (lane == 0) {
    for (int g = 0; g < kHeadsPerBlock; ++g) {
      warp_max[warp][g] = running_max[g];
      warp_sum[warp][g] = running_sum[g];
    }
  }
#pragma unroll
  for (int g = 0; g < kHeadsPerBlock; ++g)
#pragma unroll
    for (int e = 0; e < E; ++e) warp_acc[warp][g][lane + 32 * e] = acc[g][e];
  __syncthreads();

  for (int task = threadIdx.x; task < heads * (D + 2); task += blockDim.x) {
    const int g = task / (D + 2), d = task % (D + 2);
    float block_max = -INFINITY;
    for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_max[w][g]);
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float factor = cuda_layout::merge_factor(warp_max[w][g], block_max);  // 0: the warp saw no position
      total += factor * (d < D ? warp_acc[w][g][d] : warp_sum[w][g]);
    }
    float* out = a.partial + ((token * a.n_heads + first_head + g) * a.splits + split) * (D + 2);
    if (d < D) out[d] = total;
    else if (d == D) out[D] = block_max;
    else out[D + 1] = total;  // d == D + 1: the sum of weights
  }
}

__global__ void combine_kernel(AttentionArguments a) {
  const int64_t token = blockIdx.x;
  const int head = blockIdx.y, D = a.head_dim;
  const float* partial = a.partial + (token * a.n_heads + head) * a.splits * (D + 2);
  float overall_max = -INFINITY;
  for (int s = 0; s < a.splits; ++s) overall_max = fmaxf(overall_max, partial[s * (D + 2) + D]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float numerator = 0.0f, denominator = 0.0f;
    for (int s = 0; s < a.splits; ++s) {
      const float* part = partial + s * (D + 2);
      const float factor = cuda_layout::merge_factor(part[D], overall_max);  // 0: past this token's length
      numerator += factor * part[d];
      denominator += factor * part[D + 1];
    }
    a.out.data[token * a.out.stride + head * D + d] = numerator / denominator;
  }
}

}  // namespace

void attention(const AttentionArguments& a, cudaStream_t stream) {
  if (a.head_dim > kMaxHeadDim || a.head_dim % 2 != 0) {
    throw std::invalid_argument("[cuda] attention: head_dim " + std::to_string(a.head_dim) +
                                " is not supported (even, at most " + std::to_string(kMaxHeadDim) + ")");
  }
  const int64_t n = a.q.rows;
  const int group = a.n_heads / a.n_kv_heads;
  const int head_chunks = (group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(a.n_kv_heads * head_chunks),
                  static_cast<unsigned>(n));
  auto* kernel = a.head_dim <= 32 ? attention_kernel<1> : a.head_dim <= 64 ? attention_kernel<2>
               : a.head_dim <= 128 ? attention_kernel<4> : attention_kernel<8>;
  launch("attention", kernel, grid, kWarps * 32, 0, stream, a, head_chunks);
  launch("attention combine", combine_kernel, dim3(static_cast<unsigned>(n), static_cast<unsigned>(a.n_heads)), 128, 0,
         stream, a);
}

}  // namespace awq_edge::cuda
