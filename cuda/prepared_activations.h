// prepared_activations.h: writing the q4 linear kernels' activation operand (q4_layout.h) from fp32,
// shared by prepare_activations.cu and the kernels that produce a linear layer's input and prepare
// it on the way (rms_norm.cu, attention.cu, gemv_q4.cu), so that all give the same bytes.
//
//   row: fp32 (K,)            prepared row: fp16 (K,), each 32-column block permuted
//   group j = columns [j g, (j + 1) g)  ->  scaled: each value / 2^e, 2^e >= the group's max |x|,
//                                            multiplier[j] = 2^e; unscaled: as it is, multiplier 1
//
//   one warp per group: lane l takes columns l, l + 32, ... of the group (g / 32 of them), the
//   group's max |x| by shuffles. The row is read with ld.global.cg (L2, not L1): in the fused
//   producers other blocks of the same launch wrote parts of it (after __threadfence and a counter).
#pragma once

#include <cuda_fp16.h>

#include "q4_layout.h"

namespace awq_edge::cuda {

// Column k of a row, value / multiplier rounded to fp16, at its place in the prepared (permuted) row.
// The multiplier is a power of two 2^e (e <= 128), so 1 / multiplier is exact (0 for 2^128 = inf) and
// value * (1 / multiplier) is value / multiplier, without a division per value.
__device__ __forceinline__ void write_prepared(__half* prepared_row, int64_t k, float value, float inverse_multiplier) {
  prepared_row[(k / 32) * 32 + cuda_layout::permuted_position(static_cast<int>(k % 32))] =
      __float2half_rn(value * inverse_multiplier);
}

// Group `group` of `row` (group_size 32, 64 or 128) by the calling warp; `multipliers` may be null.
__device__ __forceinline__ void prepare_group(const float* row, int64_t group, int group_size, bool scaled,
                                              __half* prepared_row, float* multipliers) {
  const int lane = threadIdx.x & 31;
  const int per_lane = group_size / 32;
  const int64_t first = group * group_size;
  float values[4] = {};
  float largest = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (i < per_lane) {
      values[i] = __ldcg(row + first + lane + 32 * i);  // through L2: other blocks may have written it
      largest = fmaxf(largest, fabsf(values[i]));
    }
  }
  float multiplier = 1.0f;
  if (scaled) {
    for (int offset = 16; offset > 0; offset /= 2) largest = fmaxf(largest, __shfl_xor_sync(0xFFFFFFFFu, largest, offset));
    multiplier = cuda_layout::group_multiplier(largest);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (i < per_lane) write_prepared(prepared_row, first + lane + 32 * i, values[i], 1.0f / multiplier);
  }
  if (lane == 0 && multipliers != nullptr) multipliers[group] = multiplier;
}

// The whole row by the calling block's warps (group g to warp g % warps).
__device__ __forceinline__ void prepare_row(const float* row, int64_t cols, int group_size, bool scaled,
                                            __half* prepared_row, float* multipliers) {
  const int warp = static_cast<int>(threadIdx.x >> 5), warps = static_cast<int>(blockDim.x >> 5);
  for (int64_t group = warp; group < cols / group_size; group += warps) {
    prepare_group(row, group, group_size, scaled, prepared_row, multipliers);
  }
}

}  // namespace awq_edge::cuda
