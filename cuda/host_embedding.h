// host_embedding.h: the CUDA backend's embedding table when only embed() reads it (an untied LM
// head): left in the file's memory mapping, read in place by the CPU backend's reference code,
// and never copied to the GPU. A step's rows are gathered here, on the host, into the buffer the
// backend copies to the GPU with the step's token ids:
//
//   file mapping (V, K) as stored (f16, q8_row, q3/q4 groups)     host gather, fp32 (n, K)
//   row tokens[0] ──────────────────────────────────────────────▶ row 0
//   row tokens[1] ──────────────────────────────────────────────▶ row 1 ... then one copy to the GPU
//
// LLaMA-2-7B's fp16 table is 250 MiB and LLaMA-3-8B's 1 GiB of GPU memory (on a Jetson, of the
// DRAM it shares with the CPU) for 8 KiB read per token. Plain C++ (no CUDA headers).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "awq_edge/schemes.h"
#include "awq_edge/tensor.h"

namespace awq_edge::cuda_layout {

class HostEmbeddingTable {
 public:
  // tensors: the module's file tensors in FORMAT.md order, views into the mapping, which must
  // outlive the table. Throws std::invalid_argument naming the tensor when one does not match.
  HostEmbeddingTable(const Scheme& scheme, int64_t rows, int64_t cols, const std::vector<TensorView>& tensors);
  ~HostEmbeddingTable();
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // out (n, cols) fp32 = rows tokens[0..n) of the table. Throws std::out_of_range for an id
  // outside [0, rows).
  void gather(const int32_t* tokens, int64_t n, float* out) const;

 private:
  struct Weight;  // the CPU backend's view of the tensors
  int64_t rows_, cols_;
  std::unique_ptr<const Weight> weight_;
};

}  // namespace awq_edge::cuda_layout
