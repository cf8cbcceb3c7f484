// prepare_activations.cu: fp32 activations -> the fp16 operand of the q4 linear kernels.
//
//   x (m, K) fp32, row stride x.stride       prepared (m, K) fp16, row stride K
//   block of columns 32c .. 32c+31     ->    same block, column 2t + 8p + e at position 8t + 2p + e
//                                            (q4_layout.h: lane tig = t finds its 8 values at
//                                             positions 8t .. 8t+7, one 16-byte load)
//   scaled: each group of g columns of a token divided by 2^e >= its max |x| (multipliers (m, K/g)
//   = 2^e), so the decode kernel's fp16 sums stay small; unscaled (prefill): multiplier 1.
//
// One thread block per (token, group), one thread per column (g = 32, 64 or 128 threads).
#include "kernels.h"
#include "launch.h"
#include "q4_layout.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

__global__ void prepare_activations_kernel(const float* __restrict__ x, int64_t x_stride, int64_t cols, bool scaled,
                                           __half* __restrict__ prepared, float* __restrict__ multipliers) {
  __shared__ float warp_max[4];
  const int64_t token = blockIdx.y, group = blockIdx.x;
  const int group_size = blockDim.x;
  const int64_t k = group * group_size + threadIdx.x;
  const float value = x[token * x_stride + k];
  float multiplier = 1.0f;
  if (scaled) {
    float largest = fabsf(value);
    for (int offset = 16; offset > 0; offset /= 2) largest = fmaxf(largest, __shfl_xor_sync(0xFFFFFFFFu, largest, offset));
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x / 32] = largest;
    __syncthreads();
    for (int w = 0; w < group_size / 32; ++w) largest = fmaxf(largest, warp_max[w]);
    multiplier = cuda_layout::group_multiplier(largest);
  }
  const int64_t position = (k / 32) * 32 + cuda_layout::permuted_position(static_cast<int>(k % 32));
  prepared[token * cols + position] = __float2half_rn(value / multiplier);
  if (threadIdx.x == 0 && multipliers != nullptr) multipliers[token * (cols / group_size) + group] = multiplier;
}

}  // namespace

void prepare_activations(const Matrix& x, int group_size, bool scaled, uint16_t* prepared, float* multipliers,
                         cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(x.cols / group_size), static_cast<unsigned>(x.rows));
  launch("prepare_activations", prepare_activations_kernel, grid, group_size, 0, stream, x.data, x.stride, x.cols,
         scaled, reinterpret_cast<__half*>(prepared), multipliers);
}

}  // namespace awq_edge::cuda
