// attention_math.h: the arithmetic of the attention kernel (attention.cu) that its host test
// (tests/cuda/test_attention_math.cpp) runs too: which positions a (token, split) covers, the
// online softmax step, the weight of a partial result in a merge, and the rotary embedding of one
// element. Plain C++17 off nvcc.
#pragma once

#include <cmath>
#include <cstdint>

#include "q4_layout.h"  // AWQ_EDGE_HD

namespace awq_edge::cuda_layout {

AWQ_EDGE_HD float exp_fast(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return std::exp(x);
#endif
}

// Positions [begin, end) of `token` (0-based in a call of `tokens` tokens starting at
// first_position; causal: the token sees [0, first_position + token]) that split `split` of
// `splits` covers. Every split spans the same number of positions of the call's longest token,
// so the split of a position does not depend on the token; end <= begin means nothing to do.
struct PositionRange {
  int64_t begin, end;
};
AWQ_EDGE_HD PositionRange split_positions(int64_t first_position, int64_t tokens, int splits, int split, int64_t token) {
  const int64_t length = first_position + token + 1;
  const int64_t longest = first_position + tokens;
  const int64_t span = (longest + splits - 1) / splits;
  const int64_t begin = split * span;
  const int64_t end = begin + span < length ? begin + span : length;
  return {begin, end};
}

// One more score in a running softmax (running_max starts at -inf, running_sum at 0): updates
// them and says by what to scale the weighted sum so far (correction) and the new value's weight.
struct SoftmaxStep {
  float correction, weight;
};
AWQ_EDGE_HD SoftmaxStep online_softmax_step(float& running_max, float& running_sum, float score) {
  const float new_max = running_max > score ? running_max : score;
  const float correction = running_max == -INFINITY ? 0.0f : exp_fast(running_max - new_max);
  const float weight = exp_fast(score - new_max);
  running_sum = running_sum * correction + weight;
  running_max = new_max;
  return {correction, weight};
}

// The factor of a partial result (its running max partial_max, its sums) in a merge whose largest
// max is merged_max: 0 for a partial that saw no position (max -inf).
AWQ_EDGE_HD float merge_factor(float partial_max, float merged_max) {
  return partial_max == -INFINITY ? 0.0f : exp_fast(partial_max - merged_max);
}

// Element d of a head of D = 2 * half values rotated by the rotary embedding of one position
// (cos_row, sin_row: the tables' rows of that position, half values each), Hugging Face's
// rotate_half convention: pairs (d, d + half).
AWQ_EDGE_HD float rotated(const float* head, int d, int half, const float* cos_row, const float* sin_row) {
  const int pair = d < half ? d : d - half;
  return d < half ? head[d] * cos_row[pair] - head[d + half] * sin_row[pair]
                  : head[d] * cos_row[pair] + head[d - half] * sin_row[pair];
}

}  // namespace awq_edge::cuda_layout
