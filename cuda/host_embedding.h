// host_embedding.h: the CUDA backend's embedding table when only embed() reads it (an untied LM
// head) and it is stored as f16 or q8_row rows (an exported untied table is f16): left in the
// file's memory mapping and never copied to the GPU whole. A step's rows are copied here, on the
// host, as stored, into the step state that the backend sends to the GPU with the token ids;
// the embedding kernel then reads that small table with row i for token i:
//
//   file mapping (V, K) as stored                 staged rows (n, K), 16-byte aligned parts
//   row tokens[0] ──── memcpy ───────────────────▶ row 0 ─┐
//   row tokens[1] ──── memcpy ───────────────────▶ row 1  ├─ values: n x K x (2 f16 | 1 int8) bytes
//   ...                                                    ┘
//   scales[tokens[i]] (q8_row)  ─────────────────▶ scales: n fp16 (q8_row only)
//
// LLaMA-2-7B's fp16 table is 250 MiB and LLaMA-3-8B's 1 GiB of GPU memory (on a Jetson, of the
// DRAM it shares with the CPU) for 8 KiB read per token. Plain C++ (no CUDA headers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "awq_edge/schemes.h"
#include "awq_edge/tensor.h"

namespace awq_edge::cuda_layout {

class HostEmbeddingTable {
 public:
  // Whether a table of this scheme can stay on the host (rows as stored: f16 and q8_row).
  static bool supports(const Scheme& scheme);
  // tensors: the module's file tensors in FORMAT.md order ({weight} or {qweight, scales}), views
  // into the mapping, which must outlive the table. Throws std::invalid_argument naming the
  // problem when the scheme is not supported or a tensor's size does not match (rows, cols).
  HostEmbeddingTable(const Scheme& scheme, int64_t rows, int64_t cols, const std::vector<TensorView>& tensors);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool int8() const { return int8_; }
  // The staged form of n rows: values at offset 0, then (q8_row) the scales at scales_offset(n).
  size_t scales_offset(int64_t n) const;
  size_t staged_bytes(int64_t n) const;
  // Copies rows tokens[0..n) into `staged` (staged_bytes(n) bytes). Throws std::out_of_range for
  // an id outside [0, rows).
  void gather(const int32_t* tokens, int64_t n, uint8_t* staged) const;

 private:
  int64_t rows_, cols_;
  bool int8_;
  const uint8_t* values_;    // (rows, cols) f16 or int8, in the mapping
  const uint16_t* scales_;   // (rows) fp16, q8_row only
};

}  // namespace awq_edge::cuda_layout
