// tuning.h: the CUDA kernels' launch configurations, chosen per GPU at run time from a table keyed
// by compute capability and SM count (tuning.cpp), and overridable for measurements through the
// environment variable AWQ_EDGE_CUDA_TUNING ("gemv_max_warps=4,gemm_warps=2", any subset of the
// fields below), which tools/tune_cuda.py uses to time the candidates on the GPU at hand and
// print a table entry.
#pragma once

#include <cstdint>
#include <string>

namespace awq_edge::cuda {

struct KernelConfig {
  int gemv_max_warps = 4;            // at most this many warps split K per strip of 32 rows (1, 2, 4, 8)
  int gemv_warps_per_sm = 16;        // aim for this many resident warps per SM in a decode matrix-vector
  int gemm_warps = 2;                // warps splitting K per 64-token x 32-row prefill tile (1..4)
  int attention_blocks_per_sm = 4;   // flash-decoding: split the positions until this many blocks per SM
  int gemm_strips = 4;               // prefill with x staged in shared memory: strips of 32 rows per block
                                     // (2, 4, 8; 1 = always the split-K kernel), see gemm_strips_per_block
  bool gemm_fp16_accumulate = false; // prefill: sum each group in fp16 (twice the tensor-core rate of fp32 on
                                     // some GPUs), for weights whose scales allow it (fp16_accumulation_safe)
  bool gemm_staged_always = false;   // tests: the x-staged kernel whatever the grid (override only)
  bool programmatic_launch = false;  // compute capability 9.0+: programmatic dependent launches (launch.h),
                                     // so that kernel boundaries overlap; off until measured (override only)
};

struct TuningEntry {
  const char* device;   // what the entry was written for
  int major, minor;     // compute capability
  int min_sms, max_sms; // SM counts it applies to
  bool measured;        // false: derived from the hardware's published figures, not yet timed
  KernelConfig config;
};

// The entry for this GPU (the closest one of its compute capability, else the generic default),
// with AWQ_EDGE_CUDA_TUNING applied; `source` describes where it came from, for logs.
KernelConfig tuned_config(int major, int minor, int sms, std::string* source);

// Parses "field=value,..." onto config; throws std::invalid_argument naming a bad field or value.
void apply_tuning_overrides(const std::string& text, KernelConfig& config);

// Warps per strip for a matrix-vector product over `strips` strips of 32 rows.
int gemv_warps(const KernelConfig& config, int64_t strips, int sms);

// The prefill kernel for `strips` strips and `tokens` tokens: the number of strips per block of the
// x-staged kernel (config.gemm_strips), or 1 for the split-K kernel, which is taken when the staged
// kernel would leave more than half the SMs without a block (small N and few tokens) or gemm_strips
// is 1, unless gemm_staged_always. (The threshold is a guess until measured: tools/tune_cuda.py times
// both kernels.)
int gemm_strips_per_block(const KernelConfig& config, int64_t strips, int64_t tokens, int sms);

// Splits of the positions for `tasks` (token, kv-head) pairs attending over up to `length` positions.
int attention_splits(const KernelConfig& config, int64_t tasks, int64_t length, int sms);

}  // namespace awq_edge::cuda
