// weight_packing.h: the host side of the CUDA backend's upload: a grouped (q4 or q3) module's file
// tensors repacked into the fragment layout of q4_layout.h. Plain C++ (no CUDA headers), so that
// tests/cuda/test_q4_layout.cpp checks it on machines without a GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "awq_edge/schemes.h"
#include "awq_edge/tensor.h"

namespace awq_edge::cuda_layout {

struct PackedGroupedWeight {
  int64_t rows = 0, cols = 0, group_size = 0;
  int64_t strips = 0, blocks = 0, groups = 0;  // ceil(rows/32), cols/32, cols/group_size
  std::vector<uint32_t> words;   // (strips, blocks, 32 lanes, 4 words)
  std::vector<uint16_t> scales;  // (strips, groups, 32 entries) fp16 bits, padding rows 0
  std::vector<uint8_t> zeros;    // (strips, groups, 32 entries), padding rows 0
  float largest_scale = 0.0f;    // max |scale| (nan if any scale is nan): see fp16_accumulation_safe
};

// tensors: {qweight, scales, zeros} as FORMAT.md section 5 stores them for `scheme` (q3 or q4,
// any group size). q3 values are widened to 4 bits (same value). Throws std::invalid_argument
// naming the tensor when a size does not match. The strips are packed by `threads` threads
// (0: packing_threads()); the result does not depend on their number.
PackedGroupedWeight pack_grouped_weight(const Scheme& scheme, int64_t rows, int64_t cols,
                                        const std::vector<TensorView>& tensors, int threads = 0);
// The same into `packed`, whose vectors are resized, not reallocated when large enough: a loader
// that packs module after module into one buffer touches fresh pages only for the largest.
void pack_grouped_weight(const Scheme& scheme, int64_t rows, int64_t cols, const std::vector<TensorView>& tensors,
                         PackedGroupedWeight& packed, int threads = 0);

// The threads a packing uses by default: AWQ_EDGE_CUDA_PACKING_THREADS when set, else the hardware's
// threads, at most 16.
int packing_threads();

}  // namespace awq_edge::cuda_layout
