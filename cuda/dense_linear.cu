// dense_linear.cu: y (m, N) = x (m, K) W^T for f16 and q8_row weights (the LM head and the
// embedding of files that keep them unquantized or int8), 8 tokens per pass over W.
//
//   W row-major as in the file: f16 (N, K); q8_row int8 (N, K) and one fp16 scale per row.
//   One warp per row of W; lane l reads 8 consecutive weights (16 bytes f16 / 8 bytes int8) at
//   columns 8(l + 32i), and the matching 8 fp32 values of each token's x (two 16-byte loads);
//   a K that is not a multiple of 8 (or rows of x not 16-byte aligned) takes the scalar loop.
#include "kernels.h"
#include "launch.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kTokensPerPass = 8;
constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ void load8(const DenseWeight& w, int64_t n, int64_t k, float out[8]) {
  if (w.int8) {
    const uint2 v = __ldcs(reinterpret_cast<const uint2*>(static_cast<const int8_t*>(w.values) + n * w.cols + k));
    const uint32_t words[2] = {v.x, v.y};
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = static_cast<float>(static_cast<int8_t>((words[i / 4] >> (8 * (i % 4))) & 0xFFu));
  } else {
    const uint4 v = __ldcs(reinterpret_cast<const uint4*>(static_cast<const __half*>(w.values) + n * w.cols + k));
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h;
      memcpy(&h, &words[i], 4);
      const float2 f = __half22float2(h);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

__device__ __forceinline__ float load1(const DenseWeight& w, int64_t n, int64_t k) {
  if (w.int8) return static_cast<float>(static_cast<const int8_t*>(w.values)[n * w.cols + k]);
  return __half2float(static_cast<const __half*>(w.values)[n * w.cols + k]);
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32) dense_linear_kernel(DenseWeight w, const float* __restrict__ x,
                                                                           int64_t x_stride, int tokens, bool vector_loads,
                                                                           const float* __restrict__ bias,
                                                                           float* __restrict__ y, int64_t y_stride) {
  const int lane = threadIdx.x & 31;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (n >= w.rows) return;
  float acc[kTokensPerPass];
#pragma unroll
  for (int t = 0; t < kTokensPerPass; ++t) acc[t] = 0.0f;
  if (vector_loads) {
    for (int64_t k = 8 * lane; k < w.cols; k += 8 * 32) {
      float wv[8];
      load8(w, n, k, wv);
#pragma unroll
      for (int t = 0; t < kTokensPerPass; ++t) {
        if (t >= tokens) break;
        const float4 a = __ldg(reinterpret_cast<const float4*>(x + t * x_stride + k));
        const float4 b = __ldg(reinterpret_cast<const float4*>(x + t * x_stride + k + 4));
        acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z +
                  wv[7] * b.w;
      }
    }
  } else {
    for (int64_t k = lane; k < w.cols; k += 32) {
      const float wv = load1(w, n, k);
      for (int t = 0; t < tokens; ++t) acc[t] += wv * x[t * x_stride + k];
    }
  }
  const float scale = w.int8 ? __half2float(reinterpret_cast<const __half*>(w.row_scales)[n]) : 1.0f;
#pragma unroll
  for (int t = 0; t < kTokensPerPass; ++t) {
    float v = acc[t];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
    if (lane == 0 && t < tokens) y[t * y_stride + n] = v * scale + (bias != nullptr ? bias[n] : 0.0f);
  }
}

}  // namespace

void dense_linear(const DenseWeight& w, const Matrix& x, const float* bias, const Matrix& y, cudaStream_t stream) {
  // 16-byte loads of W need K % 8 == 0; the float4 loads of x also a row stride of 4k floats
  const bool vector_loads = w.cols % 8 == 0 && x.stride % 4 == 0;
  const unsigned blocks = static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  for (int64_t first = 0; first < x.rows; first += kTokensPerPass) {
    const int tokens = static_cast<int>(std::min<int64_t>(kTokensPerPass, x.rows - first));
    launch("dense_linear", dense_linear_kernel, blocks, kWarpsPerBlock * 32, 0, stream, w, x.data + first * x.stride,
           x.stride, tokens, vector_loads, bias, y.data + first * y.stride, y.stride);
  }
}

}  // namespace awq_edge::cuda
