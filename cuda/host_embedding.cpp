// host_embedding.cpp: see host_embedding.h.
#include "host_embedding.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace awq_edge::cuda_layout {
namespace {

size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }

}  // namespace

bool HostEmbeddingTable::supports(const Scheme& scheme) {
  return scheme.kind == Scheme::Kind::F16 || scheme.kind == Scheme::Kind::Q8Row;
}

HostEmbeddingTable::HostEmbeddingTable(const Scheme& scheme, int64_t rows, int64_t cols,
                                       const std::vector<TensorView>& tensors)
    : rows_(rows), cols_(cols), int8_(scheme.kind == Scheme::Kind::Q8Row) {
  const std::string what = "[cuda] embedding table (" + scheme.name() + ", " + std::to_string(rows) + " x " +
                           std::to_string(cols) + ")";
  if (!supports(scheme)) throw std::invalid_argument(what + ": only f16 and q8_row tables can stay on the host");
  const size_t values = static_cast<size_t>(rows * cols) * (int8_ ? 1 : 2);
  if (tensors.size() != (int8_ ? 2u : 1u) || tensors[0].size != values ||
      (int8_ && tensors[1].size != static_cast<size_t>(rows) * 2)) {
    throw std::invalid_argument(what + ": expected " + (int8_ ? "an int8 weight of " : "an f16 weight of ") +
                                std::to_string(values) + " bytes" + (int8_ ? " and one fp16 scale per row" : "") +
                                ", found " + std::to_string(tensors.size()) + " tensor(s) of " +
                                (tensors.empty() ? std::string("-") : std::to_string(tensors[0].size)) + " bytes");
  }
  values_ = static_cast<const uint8_t*>(tensors[0].data);
  scales_ = int8_ ? static_cast<const uint16_t*>(tensors[1].data) : nullptr;
}

size_t HostEmbeddingTable::scales_offset(int64_t n) const {
  return align16(static_cast<size_t>(n * cols_) * (int8_ ? 1 : 2));
}

size_t HostEmbeddingTable::staged_bytes(int64_t n) const {
  return scales_offset(n) + (int8_ ? align16(static_cast<size_t>(n) * 2) : 0);
}

void HostEmbeddingTable::gather(const int32_t* tokens, int64_t n, uint8_t* staged) const {
  const size_t row_bytes = static_cast<size_t>(cols_) * (int8_ ? 1 : 2);
  auto* scales = reinterpret_cast<uint16_t*>(staged + scales_offset(n));
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= rows_) {
      throw std::out_of_range("[cuda] embed: token id " + std::to_string(tokens[i]) + " (position " +
                              std::to_string(i) + " of the step) is outside the embedding table's " +
                              std::to_string(rows_) + " rows");
    }
    std::memcpy(staged + static_cast<size_t>(i) * row_bytes, values_ + static_cast<size_t>(tokens[i]) * row_bytes,
                row_bytes);
    if (int8_) scales[i] = scales_[tokens[i]];
  }
}

}  // namespace awq_edge::cuda_layout
