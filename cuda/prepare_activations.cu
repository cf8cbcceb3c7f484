// prepare_activations.cu: fp32 activations -> the fp16 operand of the q4 linear kernels.
//
//   x (m, K) fp32, row stride x.stride       prepared (m, K) fp16, row stride K
//   block of columns 32c .. 32c+31     ->    same block, column 2t + 8p + e at position 8t + 2p + e
//                                            (q4_layout.h: lane tig = t finds its 8 values at
//                                             positions 8t .. 8t+7, one 16-byte load)
//   scaled: each group of g columns of a token divided by 2^e >= its max |x| (multipliers (m, K/g)
//   = 2^e), so the decode kernel's fp16 sums stay small; unscaled (prefill): multiplier 1.
//
// One block of 4 warps per (token, 4 groups), a warp per group (prepared_activations.h).
#include "kernels.h"
#include "launch.h"
#include "prepared_activations.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kWarps = 4;

__global__ void prepare_activations_kernel(const float* __restrict__ x, int64_t x_stride, int64_t cols, int group_size,
                                           bool scaled, __half* __restrict__ prepared, float* __restrict__ multipliers) {
  wait_for_previous_kernels();
  const int64_t token = blockIdx.y;
  const int64_t group = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (group >= cols / group_size) return;  // the whole warp
  prepare_group(x + token * x_stride, group, group_size, scaled, prepared + token * cols,
                multipliers != nullptr ? multipliers + token * (cols / group_size) : nullptr);
}

}  // namespace

void prepare_activations(const Matrix& x, int group_size, bool scaled, uint16_t* prepared, float* multipliers,
                         cudaStream_t stream) {
  const int64_t groups = x.cols / group_size;
  const dim3 grid(static_cast<unsigned>((groups + kWarps - 1) / kWarps), static_cast<unsigned>(x.rows));
  launch("prepare_activations", prepare_activations_kernel, grid, kWarps * 32, 0, stream, x.data, x.stride, x.cols,
         group_size, scaled, reinterpret_cast<__half*>(prepared), multipliers);
}

}  // namespace awq_edge::cuda
