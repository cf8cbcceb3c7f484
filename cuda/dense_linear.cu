// dense_linear.cu: y (m, N) = x (m, K) W^T for f16 and q8_row weights (the LM head and the
// embedding of files that keep them unquantized or int8), 8 tokens per pass over W.
//
//   W row-major as in the file: f16 (N, K); q8_row int8 (N, K) and one fp16 scale per row.
//   One warp per row of W. Lane l reads 16 bytes of its row per load: f16, 8 weights at columns
//   8(l + 32i); int8, 16 weights at columns 16(l + 32i); and the matching fp32 values of each
//   token's x (16-byte loads). A warp keeps kDepth = 4 such loads in flight (2 KB), issued before the
//   first is used: the LM head is a third of a small model's bytes (Llama-3.2-1B: a 128256 x 2048
//   int8 table), and with one load in flight per lane the SMs' resident warps could not keep
//   enough bytes in flight to reach a fast GPU's bandwidth. A K that is not a multiple of 8 (f16)
//   or 16 (int8), or rows of x not 16-byte aligned, take the scalar loop.
#include "kernels.h"
#include "launch.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kTokensPerPass = 8;
constexpr int kWarpsPerBlock = 4;
constexpr int kDepth = 4;  // 16-byte weight loads a lane keeps in flight

template <bool kInt8>
constexpr int kWeightsPerLoad = kInt8 ? 16 : 8;

// The kWeightsPerLoad weights of a 16-byte load, as fp32.
template <bool kInt8>
__device__ __forceinline__ void unpack(const uint4& v, float out[kWeightsPerLoad<kInt8>]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
  if constexpr (kInt8) {
#pragma unroll
    for (int i = 0; i < 16; ++i) out[i] = static_cast<float>(static_cast<int8_t>((words[i / 4] >> (8 * (i % 4))) & 0xFFu));
  } else {
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

// acc[t] += row n of W . x[t] over the columns, kDepth loads in flight.
template <bool kInt8>
__device__ __forceinline__ void accumulate_row(const DenseWeight& w, int64_t n, const float* __restrict__ x,
                                               int64_t x_stride, int tokens, float acc[kTokensPerPass]) {
  constexpr int kPerLoad = kWeightsPerLoad<kInt8>;
  const int lane = threadIdx.x & 31;
  const char* row = static_cast<const char*>(w.values) + n * w.cols * (kInt8 ? 1 : 2);
  for (int64_t first = kPerLoad * lane; first < w.cols; first += kPerLoad * 32 * kDepth) {
    uint4 loaded[kDepth];
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int64_t k = first + d * kPerLoad * 32;
      if (k < w.cols) loaded[d] = __ldcs(reinterpret_cast<const uint4*>(row + k * (kInt8 ? 1 : 2)));
    }
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int64_t k = first + d * kPerLoad * 32;
      if (k >= w.cols) break;
      float wv[kPerLoad];
      unpack<kInt8>(loaded[d], wv);
#pragma unroll
      for (int t = 0; t < kTokensPerPass; ++t) {
        if (t >= tokens) break;
        const float4* xv = reinterpret_cast<const float4*>(x + t * x_stride + k);
        float sum = 0.0f;
#pragma unroll
        for (int q = 0; q < kPerLoad / 4; ++q) {
          const float4 a = __ldg(xv + q);
          sum += wv[4 * q] * a.x + wv[4 * q + 1] * a.y + wv[4 * q + 2] * a.z + wv[4 * q + 3] * a.w;
        }
        acc[t] += sum;
      }
    }
  }
}

template <bool kInt8>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) dense_linear_kernel(DenseWeight w, const float* __restrict__ x,
                                                                           int64_t x_stride, int tokens, bool vector_loads,
                                                                           const float* __restrict__ bias,
                                                                           float* __restrict__ y, int64_t y_stride) {
  wait_for_previous_kernels();
  const int lane = threadIdx.x & 31;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (n >= w.rows) return;
  float acc[kTokensPerPass];
#pragma unroll
  for (int t = 0; t < kTokensPerPass; ++t) acc[t] = 0.0f;
  if (vector_loads) {
    accumulate_row<kInt8>(w, n, x, x_stride, tokens, acc);
  } else {
    for (int64_t k = lane; k < w.cols; k += 32) {
      const float wv = load1(w, n, k);
      for (int t = 0; t < tokens; ++t) acc[t] += wv * x[t * x_stride + k];
    }
  }
  const float scale = kInt8 ? __half2float(reinterpret_cast<const __half*>(w.row_scales)[n]) : 1.0f;
#pragma unroll
  for (int t = 0; t < kTokensPerPass; ++t) {
    float v = acc[t];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
    if (lane == 0 && t < tokens) y[t * y_stride + n] = v * scale + (bias != nullptr ? bias[n] : 0.0f);
  }
}

}  // namespace

void dense_linear(const DenseWeight& w, const Matrix& x, const float* bias, const Matrix& y, cudaStream_t stream) {
  // 16-byte loads of W need K % 8 == 0 (f16) or 16 (int8), aligned rows; those of x 16-byte aligned rows
  const bool vector_loads = w.cols % (w.int8 ? 16 : 8) == 0 && reinterpret_cast<uintptr_t>(w.values) % 16 == 0 &&
                            x.stride % 4 == 0 && reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
  const unsigned blocks = static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  for (int64_t first = 0; first < x.rows; first += kTokensPerPass) {
    const int tokens = static_cast<int>(std::min<int64_t>(kTokensPerPass, x.rows - first));
    launch("dense_linear", w.int8 ? dense_linear_kernel<true> : dense_linear_kernel<false>, blocks,
           kWarpsPerBlock * 32, 0, stream, w, x.data + first * x.stride, x.stride, tokens, vector_loads, bias,
           y.data + first * y.stride, y.stride);
  }
}

}  // namespace awq_edge::cuda
