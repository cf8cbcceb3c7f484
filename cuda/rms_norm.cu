// rms_norm.cu: out = x / rms(x) * weight for each row of x, after the residual add x += delta when
// delta is given (written back: the residual stream keeps the sum), and optionally out's prepared
// form for the q4 decode kernels (prepared_activations.h).
//
// In decode a norm is one row per token of a few thousand floats that the previous kernel left in
// L2: its cost is the number of dependent trips to memory, not bytes. So a block per row keeps the
// row in registers and issues every load before the first use (one trip), instead of a loop whose
// iterations each wait for their own load (16 trips per pass over 4096 columns at 256 threads, two
// passes, and one more per prepared group a warp handles):
//
//   row (cols floats) as chunks of 4 columns (float4): chunk c sits in thread c % T, register slot c / T
//     | c0 c1 ... c(T-1) | cT ... c(2T-1) | ... |        T threads (a multiple of 32): up to 256 for
//       slot 0             slot 1                          rows of up to 4096 columns, up to 1024 beyond;
//                                                          kSlots = 1, 2 or 4 slots per thread
//   loads:  x and delta of every slot, all issued first; x += delta (stored), the thread's sum of
//           squares; weight of every slot (in flight while the block reduces the sums)
//   then:   out = x * (1 / rms) * weight
//   prepared (group size g = 32, 64 or 128): a group is g / 4 consecutive chunks of one slot, held by
//           g / 4 consecutive lanes of one warp: their max |out| by shuffles among them, then each
//           lane writes its 4 values (the bytes prepare_activations would write from out).
//
// Rows that are not whole 16-byte aligned chunks, or longer than 1024 x 4 chunks (16384 columns),
// take the loop kernel: one element at a time per thread, the prepared form read back from out.
#include "kernels.h"
#include "launch.h"
#include "prepared_activations.h"
#include "q4_layout.h"

#include <cuda_fp16.h>

#include <cstdint>

namespace awq_edge::cuda {
namespace {

constexpr int kThreads = 256;           // the loop kernel's, and the registers kernel's up to 4096 columns
constexpr int kMaxThreads = 1024;       // the registers kernel's beyond
constexpr int kMaxSlots = 4;

// The sum of v over the warp, the same bits in every lane (each butterfly step adds the same two
// values in both lanes of a pair).
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// The sum of v over the block, in every thread: the warps' sums, then a warp sum of those (a fixed
// order, so the same bits every run).
__device__ float block_sum(float v) {
  __shared__ float partial[kMaxThreads / 32];
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  const int lane = static_cast<int>(threadIdx.x & 31);
  return warp_sum(lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f);
}

__device__ __forceinline__ float4 zero4() { return float4{0.0f, 0.0f, 0.0f, 0.0f}; }

// x, delta and out may overlap (every load comes before the first store, and each element is one thread's).
template <int kSlots>
__global__ void __launch_bounds__(kMaxThreads) rms_norm_registers_kernel(float* x, int64_t x_stride,
                                                                      const float* delta, int64_t delta_stride,
                                                                      const float* __restrict__ weight, float eps,
                                                                      int64_t cols, float* out, int64_t out_stride,
                                                                      PreparedOutput prepared) {
  wait_for_previous_kernels();
  const int64_t chunks = cols / 4;
  float4* row = reinterpret_cast<float4*>(x + blockIdx.x * x_stride);
  const float4* delta_row = delta != nullptr ? reinterpret_cast<const float4*>(delta + blockIdx.x * delta_stride)
                                             : nullptr;
  const float4* weight_chunks = reinterpret_cast<const float4*>(weight);
  float4 v[kSlots], d[kSlots], w[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {  // every load of x and delta before the first use
    const int64_t c = threadIdx.x + static_cast<int64_t>(s) * blockDim.x;
    const bool inside = c < chunks;
    v[s] = inside ? row[c] : zero4();
    d[s] = inside && delta_row != nullptr ? delta_row[c] : zero4();
  }
  float sum_squares = 0.0f;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(s) * blockDim.x;
    if (delta_row != nullptr) {
      v[s] = float4{v[s].x + d[s].x, v[s].y + d[s].y, v[s].z + d[s].z, v[s].w + d[s].w};
      if (c < chunks) row[c] = v[s];
    }
    sum_squares += v[s].x * v[s].x + v[s].y * v[s].y + v[s].z * v[s].z + v[s].w * v[s].w;
  }
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {  // in flight during the block's reduction
    const int64_t c = threadIdx.x + static_cast<int64_t>(s) * blockDim.x;
    w[s] = c < chunks ? __ldg(weight_chunks + c) : zero4();
  }
  const float inverse_rms = rsqrtf(block_sum(sum_squares) / static_cast<float>(cols) + eps);
  float4* out_row = reinterpret_cast<float4*>(out + blockIdx.x * out_stride);
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {  // v becomes out's values
    const int64_t c = threadIdx.x + static_cast<int64_t>(s) * blockDim.x;
    v[s] = float4{v[s].x * inverse_rms * w[s].x, v[s].y * inverse_rms * w[s].y, v[s].z * inverse_rms * w[s].z,
                  v[s].w * inverse_rms * w[s].w};
    if (c < chunks) out_row[c] = v[s];
  }
  if (prepared.data == nullptr) return;
  const int lanes_per_group = prepared.group_size / 4;
  __half* prepared_row = reinterpret_cast<__half*>(prepared.data) + blockIdx.x * cols;
  float* multipliers = prepared.multipliers + blockIdx.x * (cols / prepared.group_size);
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    if (static_cast<int64_t>(s) * blockDim.x >= chunks) break;  // the same for the whole block
    const int64_t c = threadIdx.x + static_cast<int64_t>(s) * blockDim.x;
    float largest = fmaxf(fmaxf(fabsf(v[s].x), fabsf(v[s].y)), fmaxf(fabsf(v[s].z), fabsf(v[s].w)));
    for (int offset = lanes_per_group / 2; offset > 0; offset /= 2) {  // every lane: a warp's groups are whole
      largest = fmaxf(largest, __shfl_xor_sync(0xFFFFFFFFu, largest, offset));
    }
    if (c >= chunks) continue;
    const float multiplier = cuda_layout::group_multiplier(largest), inverse = 1.0f / multiplier;
    const float values[4] = {v[s].x, v[s].y, v[s].z, v[s].w};
#pragma unroll
    for (int i = 0; i < 4; ++i) write_prepared(prepared_row, 4 * c + i, values[i], inverse);
    if (c % lanes_per_group == 0) multipliers[c / lanes_per_group] = multiplier;
  }
}

__global__ void __launch_bounds__(kThreads) rms_norm_loop_kernel(float* x, int64_t x_stride, const float* delta,
                                                                 int64_t delta_stride, const float* __restrict__ weight,
                                                                 float eps, int64_t cols, float* out,
                                                                 int64_t out_stride, PreparedOutput prepared) {
  wait_for_previous_kernels();
  float* row = x + blockIdx.x * x_stride;
  float sum_squares = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = row[i];
    if (delta != nullptr) {
      v += delta[blockIdx.x * delta_stride + i];
      row[i] = v;
    }
    sum_squares += v * v;
  }
  const float inverse_rms = rsqrtf(block_sum(sum_squares) / static_cast<float>(cols) + eps);
  float* out_row = out + blockIdx.x * out_stride;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out_row[i] = row[i] * inverse_rms * weight[i];
  if (prepared.data == nullptr) return;
  __syncthreads();  // the block's writes of out_row are visible to the whole block
  const int64_t groups = cols / prepared.group_size;
  prepare_row(out_row, cols, prepared.group_size, true, reinterpret_cast<__half*>(prepared.data) + blockIdx.x * cols,
              prepared.multipliers + blockIdx.x * groups);
}

bool whole_chunks(const void* data, int64_t stride) {
  return reinterpret_cast<uintptr_t>(data) % 16 == 0 && stride % 4 == 0;
}

template <int kSlots>
void launch_registers(const Matrix& x, const Matrix* delta, const float* weight, float eps, const Matrix& out,
                      unsigned threads, cudaStream_t stream, const PreparedOutput& prepared) {
  launch("rms_norm", rms_norm_registers_kernel<kSlots>, static_cast<unsigned>(x.rows), threads, 0, stream, x.data,
         x.stride, delta != nullptr ? delta->data : nullptr, delta != nullptr ? delta->stride : 0, weight, eps, x.cols,
         out.data, out.stride, prepared);
}

// The registers kernel's threads and slots for rows of `cols` columns; threads = 0: the loop kernel.
struct RegistersLayout {
  int threads = 0, slots = 0;
};
RegistersLayout registers_layout(int64_t cols) {
  const int64_t chunks = cols / 4;
  if (cols % 4 != 0 || chunks > static_cast<int64_t>(kMaxThreads) * kMaxSlots) return RegistersLayout{};
  const int64_t per_slot = chunks <= kThreads * kMaxSlots ? chunks : (chunks + kMaxSlots - 1) / kMaxSlots;
  const int64_t most = chunks <= kThreads * kMaxSlots ? kThreads : kMaxThreads;
  const int64_t threads = per_slot >= most ? most : (per_slot + 31) / 32 * 32;
  int slots = 1;
  while (slots * threads < chunks) slots *= 2;
  return RegistersLayout{static_cast<int>(threads), slots};
}

}  // namespace

void rms_norm(const Matrix& x, const Matrix* delta, const float* weight, float eps, const Matrix& out,
              cudaStream_t stream, const PreparedOutput* prepared) {
  const PreparedOutput prepared_out = prepared != nullptr ? *prepared : PreparedOutput{};
  if (prepared_out.data != nullptr && x.cols % prepared_out.group_size != 0) {
    throw std::invalid_argument("[cuda] rms_norm: the prepared output's group size " +
                                std::to_string(prepared_out.group_size) + " does not divide the row's " +
                                std::to_string(x.cols) + " columns");
  }
  const RegistersLayout layout = registers_layout(x.cols);
  const bool registers = layout.threads > 0 && whole_chunks(x.data, x.stride) && whole_chunks(out.data, out.stride) &&
                         whole_chunks(weight, 0) && (delta == nullptr || whole_chunks(delta->data, delta->stride));
  if (!registers) {
    launch("rms_norm", rms_norm_loop_kernel, static_cast<unsigned>(x.rows), kThreads, 0, stream, x.data, x.stride,
           delta != nullptr ? delta->data : nullptr, delta != nullptr ? delta->stride : 0, weight, eps, x.cols,
           out.data, out.stride, prepared_out);
    return;
  }
  const auto threads = static_cast<unsigned>(layout.threads);
  switch (layout.slots) {
    case 1: return launch_registers<1>(x, delta, weight, eps, out, threads, stream, prepared_out);
    case 2: return launch_registers<2>(x, delta, weight, eps, out, threads, stream, prepared_out);
    default: return launch_registers<4>(x, delta, weight, eps, out, threads, stream, prepared_out);
  }
}

}  // namespace awq_edge::cuda
