// weight_packing.cpp: file layout (FORMAT.md section 5) -> fragment layout (q4_layout.h).
#include "weight_packing.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

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

// The four words of tile lanes 4*gid + tig (tig = 0..3) for 32 q4 columns of one row, from the
// row's 4 file words there (word j holds columns 8j..8j+7, column 8j+i in nibble i). Lane tig
// takes byte tig of every word: its low nibble (column 8j + 2tig) goes to nibble j, its high nibble
// (column 8j + 2tig + 1) to nibble j + 4 (q4_layout.h: column_nibble, column_tig).
void q4_block_lane_words(const uint32_t* file_words, uint32_t lane_words[4]) {
  const auto compact_nibbles = [](uint32_t bytes) {  // the low nibbles of 4 bytes -> 16 bits
    bytes = (bytes | bytes >> 4) & 0x00FF00FFu;
    return (bytes | bytes >> 8) & 0x0000FFFFu;
  };
  for (int tig = 0; tig < 4; ++tig) {
    const int shift = 8 * tig;
    const uint32_t transposed = (file_words[0] >> shift & 0xFFu) | (file_words[1] >> shift & 0xFFu) << 8 |
                                (file_words[2] >> shift & 0xFFu) << 16 | (file_words[3] >> shift & 0xFFu) << 24;
    lane_words[tig] = compact_nibbles(transposed & 0x0F0F0F0Fu) | compact_nibbles(transposed >> 4 & 0x0F0F0F0Fu) << 16;
  }
}

// The lane words for 32 q3 columns of one row: value by value from the bit stream.
void q3_block_lane_words(const uint32_t* row, int64_t block, uint32_t lane_words[4]) {
  for (int tig = 0; tig < 4; ++tig) lane_words[tig] = 0;
  for (int c = 0; c < kBlockColumns; ++c) {
    lane_words[column_tig(c)] |= stream_value(row, block * kBlockColumns + c, 3) << (4 * column_nibble(c));
  }
}

// The larger of max |scale| so far and |value|; a nan sticks.
float largest_magnitude(float largest, float value) {
  value = std::fabs(value);
  if (largest != largest) return largest;
  return value > largest || value != value ? value : largest;
}

struct FileTensors {
  const uint32_t* qweight;
  const uint16_t* scales;
  const uint32_t* zeros;
  int64_t row_words, zero_words;
  int bits;
};

// Packs strips [first, end) of `p` (sized), padding rows as zeros; returns their largest |scale|.
float pack_strips(const FileTensors& file, PackedGroupedWeight& p, int64_t first, int64_t end) {
  float largest = 0.0f;
  for (int64_t strip = first; strip < end; ++strip) {
    for (int row_in_strip = 0; row_in_strip < kStripRows; ++row_in_strip) {
      const int64_t n = strip * kStripRows + row_in_strip;
      const bool padding = n >= p.rows;
      const int gid = row_in_strip & 7, r = row_in_strip >> 3;
      const uint32_t* row = padding ? nullptr : file.qweight + n * file.row_words;
      for (int64_t b = 0; b < p.blocks; ++b) {
        uint32_t lane_words[4] = {0, 0, 0, 0};
        if (row != nullptr && file.bits == 4) q4_block_lane_words(row + 4 * b, lane_words);
        if (row != nullptr && file.bits == 3) q3_block_lane_words(row, b, lane_words);
        for (int tig = 0; tig < 4; ++tig) {
          p.words[static_cast<size_t>(word_index(strip, b, p.blocks, 4 * gid + tig, r))] = lane_words[tig];
        }
      }
      for (int64_t j = 0; j < p.groups; ++j) {
        const size_t entry = static_cast<size_t>((strip * p.groups + j) * kLanes + meta_entry(row_in_strip));
        p.scales[entry] = padding ? 0 : file.scales[n * p.groups + j];
        p.zeros[entry] = padding ? 0 : static_cast<uint8_t>(stream_value(file.zeros + n * file.zero_words, j, file.bits));
        largest = largest_magnitude(largest, fp16_to_float(p.scales[entry]));
      }
    }
  }
  return largest;
}

}  // namespace

int packing_threads() {
  static const int threads = [] {
    const char* text = std::getenv("AWQ_EDGE_CUDA_PACKING_THREADS");
    const int asked = text != nullptr ? std::atoi(text) : 0;
    const int available = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, asked > 0 ? asked : std::min(available, 16));
  }();
  return threads;
}

void pack_grouped_weight(const Scheme& scheme, int64_t rows, int64_t cols, const std::vector<TensorView>& tensors,
                         PackedGroupedWeight& p, int threads) {
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
  p.rows = rows;
  p.cols = cols;
  p.group_size = g;
  p.strips = strips(rows);
  p.blocks = cols / kBlockColumns;
  p.groups = cols / g;
  FileTensors file;
  file.bits = bits;
  file.row_words = cols * bits / 32;
  file.zero_words = (p.groups * bits + 31) / 32;
  check_size(tensors[0], "qweight", static_cast<uint64_t>(rows * file.row_words * 4), scheme);
  check_size(tensors[1], "scales", static_cast<uint64_t>(rows * p.groups * 2), scheme);
  check_size(tensors[2], "zeros", static_cast<uint64_t>(rows * file.zero_words * 4), scheme);
  file.qweight = static_cast<const uint32_t*>(tensors[0].data);
  file.scales = static_cast<const uint16_t*>(tensors[1].data);
  file.zeros = static_cast<const uint32_t*>(tensors[2].data);

  // resize, not assign: every element is written below, and a reused p keeps its pages
  p.words.resize(static_cast<size_t>(p.strips * p.blocks * kLanes * 4));
  p.scales.resize(static_cast<size_t>(p.strips * p.groups * kLanes));
  p.zeros.resize(p.scales.size());
  // Strips are independent: each thread packs a contiguous range (a thread's reads of the file
  // also fault its pages in, in parallel, when they are not cached yet).
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads > 0 ? threads : packing_threads(), p.strips));
  std::vector<float> largest(static_cast<size_t>(parts), 0.0f);
  const auto part = [&](int64_t i) {
    largest[static_cast<size_t>(i)] = pack_strips(file, p, p.strips * i / parts, p.strips * (i + 1) / parts);
  };
  std::vector<std::thread> workers;
  for (int64_t i = 1; i < parts; ++i) {
    try {
      workers.emplace_back(part, i);
    } catch (const std::system_error&) {  // no thread to be had: the caller packs this part too
      part(i);
    }
  }
  part(0);
  for (std::thread& worker : workers) worker.join();
  p.largest_scale = 0.0f;
  for (float value : largest) p.largest_scale = largest_magnitude(p.largest_scale, value);
}

PackedGroupedWeight pack_grouped_weight(const Scheme& scheme, int64_t rows, int64_t cols,
                                        const std::vector<TensorView>& tensors, int threads) {
  PackedGroupedWeight packed;
  pack_grouped_weight(scheme, rows, cols, tensors, packed, threads);
  return packed;
}

}  // namespace awq_edge::cuda_layout
