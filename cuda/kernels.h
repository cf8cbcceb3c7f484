// kernels.h: the CUDA backend's kernel launchers, called by cuda_backend.cu. Every launcher
// enqueues its kernel on `stream` and returns at once; pointers are device memory, strides are in
// elements. Activations are fp32 (the residual stream keeps full precision; the linear kernels
// round their input to fp16 as W4A16 prescribes), the KV cache fp16.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace awq_edge::cuda {

// A q4 weight in the fragment layout (q4_layout.h), in device memory.
struct GroupedWeight {
  const uint4* words = nullptr;      // (strips, blocks, 32 lanes) x 16 bytes
  const uint16_t* scales = nullptr;  // (strips, groups, 32) fp16
  const uint8_t* zeros = nullptr;    // (strips, groups, 32)
  int64_t rows = 0, cols = 0, group_size = 0, strips = 0, blocks = 0, groups = 0;
  int group_shift = 0;  // log2(group_size / 32): block b lies in group b >> group_shift
  bool fp16_accumulation_safe = false;  // q4_layout.h: the prefill kernels may sum its groups in fp16
};

// f16 (N, K) or q8_row (N, K) int8 with (N,) fp16 scales, row-major as in the file.
struct DenseWeight {
  const void* values = nullptr;
  const uint16_t* row_scales = nullptr;  // q8_row only
  bool int8 = false;
  int64_t rows = 0, cols = 0;
};

struct Matrix {  // fp32 activations
  float* data = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
};

// ------------------------------------------------------------------------------------ linear
// x (m, K) fp32 -> prepared fp16 (m, K) in the permuted block order of q4_layout.h, and when
// `scaled` each (token, group of group_size columns) divided by the power of two in
// multipliers (m, K / group_size).
void prepare_activations(const Matrix& x, int group_size, bool scaled, uint16_t* prepared, float* multipliers,
                         cudaStream_t stream);

// y (m, N) = x W^T (+ bias) for 1 <= m <= 8 from x prepared with scaled = true: one pass over W,
// warps_per_strip warps (1, 2, 4 or 8) splitting K.
void gemv_q4(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m,
             const float* bias, const Matrix& y, int warps_per_strip, cudaStream_t stream);

// The prepared (scaled) operand of the q4 decode kernels, written by the kernel that produces
// their fp32 input (as prepare_activations with scaled = true would write it): data (m, K) fp16,
// multipliers (m, K / group_size).
struct PreparedOutput {
  uint16_t* data = nullptr;
  float* multipliers = nullptr;
  int group_size = 0;
};

// Several products of one prepared x in one launch (the attention's q, k and v projections):
// output i's y (m, N_i) = x W_i^T (+ bias_i), every W_i with the same K and group size.
struct GemvOutput {
  GroupedWeight w;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t y_stride = 0;
};
constexpr int kMaxGemvOutputs = 3;
struct GemvOutputs {
  GemvOutput output[kMaxGemvOutputs];
  int count = 0;
  // gemv_q4_gated only, optional: y's prepared form for the next q4 layer (the down projection),
  // written for each group of y's columns by the last of the group's blocks to finish, counted in
  // group_counters (N / group_size zeros, zeros again after the launch).
  PreparedOutput prepared_y;
  unsigned* group_counters = nullptr;
};
void gemv_q4_outputs(const GemvOutputs& outputs, const uint16_t* prepared, const float* multipliers, int64_t m,
                     int warps_per_strip, cudaStream_t stream);

// y (m, I) = silu(x gate^T + gate_bias) * (x up^T + up_bias) for 1 <= m <= 8, gate and up of one
// shape and group size, x prepared as for gemv_q4: the MLP's first half in one launch.
// With prepared_y (and group_counters), y's prepared form too (GemvOutputs).
void gemv_q4_gated(const GroupedWeight& gate, const GroupedWeight& up, const uint16_t* prepared,
                   const float* multipliers, int64_t m, const float* gate_bias, const float* up_bias, const Matrix& y,
                   int warps_per_strip, cudaStream_t stream, const PreparedOutput* prepared_y = nullptr,
                   unsigned* group_counters = nullptr);

// y (m, N) = x W^T (+ bias) for any m on the tensor cores (mma.sync.m16n8k16). Without multipliers:
// x prepared with scaled = false, fp32 accumulation. With multipliers: x prepared with scaled = true
// for w's group size, each group summed in fp16 and added to fp32 accumulators times the multipliers
// (only for w.fp16_accumulation_safe). Each block computes 64 tokens x 32 rows with warps_per_tile
// warps splitting K.
void gemm_q4(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m, const float* bias,
             const Matrix& y, int warps_per_tile, cudaStream_t stream);

// The same product with x staged in shared memory: each block computes 64 tokens x
// strips_per_block (2, 4 or 8) strips of 32 rows, one warp per strip, reading x once per block.
void gemm_q4_staged(const GroupedWeight& w, const uint16_t* prepared, const float* multipliers, int64_t m,
                    const float* bias, const Matrix& y, int strips_per_block, cudaStream_t stream);

// y (m, N) = x W^T (+ bias) for f16 and q8_row weights, any m (8 tokens per pass over W).
void dense_linear(const DenseWeight& w, const Matrix& x, const float* bias, const Matrix& y, cudaStream_t stream);

// ------------------------------------------------------------------------------ elementwise
// out row i = row tokens[i] of the table, dequantized to fp32.
void embed_grouped(const GroupedWeight& table, const int32_t* tokens, const Matrix& out, cudaStream_t stream);
void embed_dense(const DenseWeight& table, const int32_t* tokens, const Matrix& out, cudaStream_t stream);

// When delta is given, x += delta first (written back). Then out = x / rms(x) * weight, and when
// `prepared` is given (its group size dividing x.cols), out's prepared form too (rms_norm.cu).
// x and out may be the same matrix.
void rms_norm(const Matrix& x, const Matrix* delta, const float* weight, float eps, const Matrix& out,
              cudaStream_t stream, const PreparedOutput* prepared = nullptr);

// The position-dependent kernels read the first position from device memory (`first_position`,
// one int64 written before the step), so that a recorded step (CUDA graph) replays at any position.

// Rotates q (n, nh*D) and k (n, nkv*D) in place; cos/sin tables (positions, D/2).
void rope(const Matrix& q, const Matrix& k, const float* cos, const float* sin, const int64_t* first_position,
          int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream);

// cache_k/cache_v: one layer's (capacity, nkv*D) fp16; rows *first_position + [0, n), as given
// (the decoder's fused path stores rotated keys from inside the attention kernel instead).
void store_kv(const Matrix& k, const Matrix& v, uint16_t* cache_k, uint16_t* cache_v, const int64_t* first_position,
              cudaStream_t stream);

void silu_mul(const Matrix& gate, const Matrix& up, const Matrix& out, cudaStream_t stream);
void add(const Matrix& x, const Matrix& y, cudaStream_t stream);  // x += y

// -------------------------------------------------------------------------------- attention
struct AttentionArguments {
  uint16_t* cache_k = nullptr;        // one layer, (capacity, nkv*D) fp16
  uint16_t* cache_v = nullptr;
  Matrix q, out;                      // (n, nh*D)
  Matrix new_k, new_v;                // (n, nkv*D), optional: the keys (unrotated) and values of this
                                      // call's positions, which the kernel then also writes to the cache
  const int64_t* first_position = nullptr;  // device: token i attends to positions [0, *first_position + i]
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  int splits = 1;                     // the positions are cut into this many equal slices (flash-decoding)
  float* partial = nullptr;           // scratch when splits > 1: n * nh * splits * (D + 2) floats
  unsigned* split_counters = nullptr; // scratch when splits > 1: attention_split_counters(...) zeros,
                                      // zeros again after every launch
  const float* rope_cos = nullptr;    // when set, q (and new_k) are rotated as they are read
  const float* rope_sin = nullptr;    // (tables (positions, D/2))
  PreparedOutput prepared_out;        // optional: out's prepared form too (group size dividing D,
                                      // D a multiple of 32)
};
// Largest head_dim the attention kernel takes.
constexpr int kMaxHeadDim = 256;
// One launch: attention, the new positions' store (with new_k) and the merge of the splits.
void attention(const AttentionArguments& a, cudaStream_t stream);
// How many split counters attention() needs for n tokens (zero-filled before the first launch).
int64_t attention_split_counters(int64_t n, int n_heads, int n_kv_heads);

}  // namespace awq_edge::cuda
