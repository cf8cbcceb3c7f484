// host_embedding.cpp: see host_embedding.h. The rows are dequantized by the CPU backend's
// reference code, which reads every scheme in place from the mapping.
#include "host_embedding.h"

#include <stdexcept>
#include <string>

#include "cpu/linear.h"

namespace awq_edge::cuda_layout {

struct HostEmbeddingTable::Weight {
  cpu::LinearWeight linear;
};

HostEmbeddingTable::HostEmbeddingTable(const Scheme& scheme, int64_t rows, int64_t cols,
                                       const std::vector<TensorView>& tensors)
    : rows_(rows), cols_(cols),
      weight_(new Weight{cpu::pack_linear(scheme, rows, cols, tensors, cpu::KernelLevel::Reference)}) {}

HostEmbeddingTable::~HostEmbeddingTable() = default;

void HostEmbeddingTable::gather(const int32_t* tokens, int64_t n, float* out) const {
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= rows_) {
      throw std::out_of_range("[cuda] embed: token id " + std::to_string(tokens[i]) + " (position " +
                              std::to_string(i) + " of the step) is outside the embedding table's " +
                              std::to_string(rows_) + " rows");
    }
    cpu::dequantize_row(weight_->linear, tokens[i], out + i * cols_);
  }
}

}  // namespace awq_edge::cuda_layout
