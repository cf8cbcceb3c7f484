// elementwise.cu: the decoder's operations other than linear layers, RMSNorm (rms_norm.cu) and attention.
//
//   activations fp32 (rows, cols) with a row stride; KV cache fp16 (capacity, nkv*D) per layer;
//   rope tables fp32 (positions, D/2).
//
//   embed_*      one block per token, threads over the K columns of the table row
//   rope         one block per token, one thread per (head, pair i) of q and k; pairs (i, i + D/2)
//   store_kv     one thread per element, rounded to fp16
//   silu_mul/add one thread per element
#include "attention_math.h"
#include "kernels.h"
#include "launch.h"
#include "q4_layout.h"

#include <cuda_fp16.h>

namespace awq_edge::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void embed_grouped_kernel(GroupedWeight table, const int32_t* __restrict__ tokens, float* out,
                                     int64_t out_stride) {
  wait_for_previous_kernels();
  const int64_t row = tokens[blockIdx.x];
  const uint32_t* words = reinterpret_cast<const uint32_t*>(table.words);
  const int64_t strip = row / 32;
  const int entry = cuda_layout::meta_entry(static_cast<int>(row % 32));
  for (int64_t k = threadIdx.x; k < table.cols; k += blockDim.x) {
    const int64_t meta = (strip * table.groups + k / table.group_size) * 32 + entry;
    const float q = static_cast<float>(cuda_layout::packed_value(words, table.blocks, row, k));
    const float scale = __half2float(reinterpret_cast<const __half*>(table.scales)[meta]);
    out[blockIdx.x * out_stride + k] = (q - static_cast<float>(table.zeros[meta])) * scale;
  }
}

__global__ void embed_dense_kernel(DenseWeight table, const int32_t* __restrict__ tokens, float* out,
                                   int64_t out_stride) {
  wait_for_previous_kernels();
  const int64_t row = tokens[blockIdx.x];
  const float scale = table.int8 ? __half2float(reinterpret_cast<const __half*>(table.row_scales)[row]) : 1.0f;
  for (int64_t k = threadIdx.x; k < table.cols; k += blockDim.x) {
    const float v = table.int8 ? static_cast<float>(static_cast<const int8_t*>(table.values)[row * table.cols + k])
                               : __half2float(static_cast<const __half*>(table.values)[row * table.cols + k]);
    out[blockIdx.x * out_stride + k] = v * scale;
  }
}

__global__ void rope_kernel(float* q, int64_t q_stride, float* k, int64_t k_stride, const float* __restrict__ cos_table,
                            const float* __restrict__ sin_table, const int64_t* first_position, int n_heads,
                            int n_kv_heads, int head_dim) {
  wait_for_previous_kernels();
  const int half = head_dim / 2;
  const int64_t token = blockIdx.x, position = *first_position + token;
  const float* cos_row = cos_table + position * half;
  const float* sin_row = sin_table + position * half;
  for (int task = threadIdx.x; task < (n_heads + n_kv_heads) * half; task += blockDim.x) {
    const int head = task / half, i = task % half;
    float* x = head < n_heads ? q + token * q_stride + head * head_dim
                              : k + token * k_stride + (head - n_heads) * head_dim;
    const float first = cuda_layout::rotated(x, i, half, cos_row, sin_row);
    const float second = cuda_layout::rotated(x, i + half, half, cos_row, sin_row);
    x[i] = first;
    x[i + half] = second;
  }
}

__global__ void store_kv_kernel(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t rows,
                                int64_t cols, __half* cache_k, __half* cache_v, const int64_t* first_position) {
  wait_for_previous_kernels();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols, position = *first_position + r;
  cache_k[position * cols + c] = __float2half_rn(k[r * k_stride + c]);
  cache_v[position * cols + c] = __float2half_rn(v[r * v_stride + c]);
}

__global__ void silu_mul_kernel(Matrix gate, Matrix up, Matrix out) {
  wait_for_previous_kernels();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= gate.rows * gate.cols) return;
  const int64_t r = i / gate.cols, c = i % gate.cols;
  const float g = gate.data[r * gate.stride + c];
  out.data[r * out.stride + c] = g / (1.0f + expf(-g)) * up.data[r * up.stride + c];
}

__global__ void add_kernel(Matrix x, Matrix y) {
  wait_for_previous_kernels();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= x.rows * x.cols) return;
  const int64_t r = i / x.cols, c = i % x.cols;
  x.data[r * x.stride + c] += y.data[r * y.stride + c];
}

unsigned element_blocks(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

}  // namespace

void embed_grouped(const GroupedWeight& table, const int32_t* tokens, const Matrix& out, cudaStream_t stream) {
  launch("embed_grouped", embed_grouped_kernel, static_cast<unsigned>(out.rows), kThreads, 0, stream, table, tokens,
         out.data, out.stride);
}

void embed_dense(const DenseWeight& table, const int32_t* tokens, const Matrix& out, cudaStream_t stream) {
  launch("embed_dense", embed_dense_kernel, static_cast<unsigned>(out.rows), kThreads, 0, stream, table, tokens,
         out.data, out.stride);
}

void rope(const Matrix& q, const Matrix& k, const float* cos, const float* sin, const int64_t* first_position,
          int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream) {
  launch("rope", rope_kernel, static_cast<unsigned>(q.rows), kThreads, 0, stream, q.data, q.stride, k.data, k.stride,
         cos, sin, first_position, n_heads, n_kv_heads, head_dim);
}

void store_kv(const Matrix& k, const Matrix& v, uint16_t* cache_k, uint16_t* cache_v, const int64_t* first_position,
              cudaStream_t stream) {
  launch("store_kv", store_kv_kernel, element_blocks(k.rows * k.cols), kThreads, 0, stream, k.data, k.stride, v.data,
         v.stride, k.rows, k.cols, reinterpret_cast<__half*>(cache_k), reinterpret_cast<__half*>(cache_v),
         first_position);
}

void silu_mul(const Matrix& gate, const Matrix& up, const Matrix& out, cudaStream_t stream) {
  launch("silu_mul", silu_mul_kernel, element_blocks(gate.rows * gate.cols), kThreads, 0, stream, gate, up, out);
}

void add(const Matrix& x, const Matrix& y, cudaStream_t stream) {
  launch("add", add_kernel, element_blocks(x.rows * x.cols), kThreads, 0, stream, x, y);
}

}  // namespace awq_edge::cuda
