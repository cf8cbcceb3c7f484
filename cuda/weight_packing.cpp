// weight_packing.cpp: file layout (FORMAT.md section 5) -> fragment layout (q4_layout.h).
#include "weight_packing.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "awq_edge/fp16.h"
#include "q4_layout.h"

namespace awq_edge::cuda_layout {
namespace {

// Value i of a row's little-endian bit stream of `bits`-bit values (FORMAT.md packing rule).
uint32_t stream_value(const uint32_t* row_words, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const uint64_t low = row_words[bit / 32];
  const int shift = static_cast<int>(bit % 32);
  uint64_t both = low >> shift;
  if (shift + bits > 32) both |= static_cast<uint64_t>(row_words[bit / 32 + 1]) << (32 - shift);
  return static_cast<uint32_t>(both) & ((1u << bits) - 1u);
}

void check_size(const TensorView& tensor, const char* name, uint64_t expected_bytes, const Scheme& scheme) {
  if (tensor.size != expected_bytes) {
    throw std::invalid_argument(std::string("[cuda] ") + scheme.name() + " " + name + ": expected " +
                                std::to_string(expected_bytes) + " bytes, found " + std::to_string(tensor.size));
  }
}

}  // namespace

PackedGroupedWeight pack_grouped_weight(const Scheme& scheme, int64_t rows, int64_t cols,
                                        const std::vector<TensorView>& tensors) {
  if (scheme.kind != Scheme::Kind::Grouped || (scheme.bits != 3 && scheme.bits != 4)) {
    throw std::invalid_argument("[cuda] pack_grouped_weight: " + scheme.name() + " is not a q3/q4 grouped scheme");
  }
  if (tensors.size() != 3) {
    throw std::invalid_argument("[cuda] " + scheme.name() + ": expected 3 tensors (qweight, scales, zeros), found " +
                                std::to_string(tensors.size()));
  }
  const int bits = scheme.bits;
  const int64_t g = scheme.group_size;
  if (cols % kBlockColumns != 0 || cols % g != 0) {
    throw std::invalid_argument("[cuda] " + scheme.name() + ": K = " + std::to_string(cols) +
                                " is not a multiple of 32 and of the group size");
  }
  PackedGroupedWeight p;
  p.rows = rows;
  p.cols = cols;
  p.group_size = g;
  p.strips = strips(rows);
  p.blocks = cols / kBlockColumns;
  p.groups = cols / g;
  const int64_t row_words = cols * bits / 32;
  const int64_t zero_words = (p.groups * bits + 31) / 32;
  check_size(tensors[0], "qweight", static_cast<uint64_t>(rows * row_words * 4), scheme);
  check_size(tensors[1], "scales", static_cast<uint64_t>(rows * p.groups * 2), scheme);
  check_size(tensors[2], "zeros", static_cast<uint64_t>(rows * zero_words * 4), scheme);
  const auto* qweight = static_cast<const uint32_t*>(tensors[0].data);
  const auto* scales = static_cast<const uint16_t*>(tensors[1].data);
  const auto* zeros = static_cast<const uint32_t*>(tensors[2].data);

  p.words.assign(static_cast<size_t>(p.strips * p.blocks * kLanes * 4), 0u);
  p.scales.assign(static_cast<size_t>(p.strips * p.groups * kLanes), 0u);
  p.zeros.assign(p.scales.size(), 0u);
  for (int64_t n = 0; n < rows; ++n) {
    const int64_t strip = n / kStripRows;
    const int row_in_strip = static_cast<int>(n % kStripRows);
    const int gid = row_in_strip & 7, r = row_in_strip >> 3;
    const uint32_t* row = qweight + n * row_words;
    for (int64_t b = 0; b < p.blocks; ++b) {
      uint32_t lane_words[4] = {0, 0, 0, 0};  // the words of lanes 4*gid + tig, tig = 0..3
      for (int c = 0; c < kBlockColumns; ++c) {
        const int64_t k = b * kBlockColumns + c;
        // q4: value k is nibble k % 8 of word k / 8; q3: the general bit stream
        const uint32_t q = bits == 4 ? (row[k / 8] >> (4 * (k % 8))) & 0xFu : stream_value(row, k, 3);
        lane_words[column_tig(c)] |= q << (4 * column_nibble(c));
      }
      for (int tig = 0; tig < 4; ++tig) {
        p.words[static_cast<size_t>(word_index(strip, b, p.blocks, 4 * gid + tig, r))] = lane_words[tig];
      }
    }
    for (int64_t j = 0; j < p.groups; ++j) {
      const size_t entry = static_cast<size_t>((strip * p.groups + j) * kLanes + meta_entry(row_in_strip));
      p.scales[entry] = scales[n * p.groups + j];
      const float scale = std::fabs(fp16_to_float(p.scales[entry]));
      p.largest_scale = scale > p.largest_scale || scale != scale ? scale : p.largest_scale;  // nan sticks
      p.zeros[entry] = static_cast<uint8_t>(stream_value(zeros + n * zero_words, j, bits));
    }
  }
  return p;
}

}  // namespace awq_edge::cuda_layout
