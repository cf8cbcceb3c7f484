// test_attention_math.cpp: the attention kernel's arithmetic (cuda/attention_math.h) on the host,
// arranged as the kernel arranges it (cuda/attention.cu): for each token, each split covers
// split_positions(); within a split, warp w of 4 takes P consecutive positions per step (P = 1, 2 or
// 4: PositionsPerStep), steps at begin + wP, then 4P further on, ..., positions past the split's end
// taken by no row, with an online softmax; the warps are merged into the split's partial (max,
// sums), and the splits into the output (the merge by the last block to finish). Checks, over first
// positions, token counts, split counts and P (including splits past a token's length, steps past a
// split's end and warps with nothing to do):
//   - every position [0, first_position + token] is visited exactly once, none beyond;
//   - the result equals softmax(scores) . values computed directly in double;
// and the rotary embedding of one element (rotated()) against a complex rotation.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "attention_math.h"

using namespace awq_edge::cuda_layout;

namespace {

int failures = 0;
constexpr int kWarps = 4, kDims = 5;

struct Partial {
  float max = -INFINITY, sum = 0.0f, acc[kDims] = {};
};

void check(int64_t first_position, int64_t tokens, int splits, int per_step, std::mt19937& rng) {
  const int64_t longest = first_position + tokens;
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> scores(static_cast<size_t>(longest)), values(static_cast<size_t>(longest * kDims));
  for (float& s : scores) s = normal(rng);
  for (float& v : values) v = normal(rng);
  for (int64_t token = 0; token < tokens; ++token) {
    const int64_t length = first_position + token + 1;
    std::vector<int> visits(static_cast<size_t>(longest + 64), 0);
    std::vector<Partial> split_partials;
    for (int split = 0; split < splits; ++split) {
      const PositionRange range = split_positions(first_position, tokens, splits, split, token);
      Partial warp_partials[kWarps];
      for (int w = 0; w < kWarps; ++w) {
        Partial& part = warp_partials[w];
        for (int64_t p0 = range.begin + w * per_step; p0 < range.end; p0 += kWarps * per_step) {
          for (int i = 0; i < per_step; ++i) {
            const int64_t p = p0 + i;
            if (p >= range.end) continue;  // the kernel's row_end: min(the token's length, the split's end)
            ++visits[static_cast<size_t>(p)];
            const SoftmaxStep step = online_softmax_step(part.max, part.sum, scores[static_cast<size_t>(p)]);
            for (int d = 0; d < kDims; ++d) part.acc[d] = part.acc[d] * step.correction + step.weight * values[static_cast<size_t>(p * kDims + d)];
          }
        }
      }
      Partial merged;  // the block's merge of its warps
      for (const Partial& part : warp_partials) merged.max = std::fmax(merged.max, part.max);
      float total_sum = 0.0f, total_acc[kDims] = {};
      for (const Partial& part : warp_partials) {
        const float factor = merge_factor(part.max, merged.max);
        total_sum += factor * part.sum;
        for (int d = 0; d < kDims; ++d) total_acc[d] += factor * part.acc[d];
      }
      merged.sum = total_sum;
      for (int d = 0; d < kDims; ++d) merged.acc[d] = total_acc[d];
      split_partials.push_back(merged);
    }
    // combine
    float overall = -INFINITY;
    for (const Partial& part : split_partials) overall = std::fmax(overall, part.max);
    double numerator[kDims] = {}, denominator = 0.0;
    for (const Partial& part : split_partials) {
      const float factor = merge_factor(part.max, overall);
      denominator += factor * part.sum;
      for (int d = 0; d < kDims; ++d) numerator[d] += factor * part.acc[d];
    }
    // reference
    double top = -INFINITY, z = 0.0, expected[kDims] = {};
    for (int64_t p = 0; p < length; ++p) top = std::fmax(top, scores[static_cast<size_t>(p)]);
    for (int64_t p = 0; p < length; ++p) {
      const double w = std::exp(scores[static_cast<size_t>(p)] - top);
      z += w;
      for (int d = 0; d < kDims; ++d) expected[d] += w * values[static_cast<size_t>(p * kDims + d)];
    }
    for (int64_t p = 0; p < longest + 64; ++p) {
      const int want = p < length ? 1 : 0;
      if (visits[static_cast<size_t>(p)] != want && ++failures <= 20) {
        std::printf("FAIL visits: first %lld tokens %lld splits %d P %d token %lld position %lld: %d, want %d\n",
                    static_cast<long long>(first_position), static_cast<long long>(tokens), splits, per_step,
                    static_cast<long long>(token), static_cast<long long>(p), visits[static_cast<size_t>(p)], want);
      }
    }
    for (int d = 0; d < kDims; ++d) {
      const double got = numerator[d] / denominator, want = expected[d] / z;
      if (!(std::fabs(got - want) <= 1e-5 * 3.0 * 4 + 1e-5) && ++failures <= 20) {
        std::printf("FAIL value: first %lld tokens %lld splits %d token %lld dim %d: %.7g, want %.7g\n",
                    static_cast<long long>(first_position), static_cast<long long>(tokens), splits,
                    static_cast<long long>(token), d, got, want);
      }
    }
  }
}

// rotated() against the rotary embedding written out as a complex rotation of (x_i, x_{i+half}) by
// the angle whose cos and sin the tables hold: (x_i + i x_{i+half}) e^{i theta}.
void check_rotation(std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_real_distribution<float> angle(-3.2f, 3.2f);
  for (int half : {1, 16, 40, 64}) {
    std::vector<float> head(static_cast<size_t>(2 * half)), cos_row(static_cast<size_t>(half)),
        sin_row(static_cast<size_t>(half));
    for (float& x : head) x = normal(rng);
    for (int i = 0; i < half; ++i) {
      const float theta = angle(rng);
      cos_row[static_cast<size_t>(i)] = std::cos(theta);
      sin_row[static_cast<size_t>(i)] = std::sin(theta);
    }
    for (int i = 0; i < half; ++i) {
      const double re = head[static_cast<size_t>(i)], im = head[static_cast<size_t>(i + half)];
      const double c = cos_row[static_cast<size_t>(i)], s = sin_row[static_cast<size_t>(i)];
      const double want[2] = {re * c - im * s, re * s + im * c};
      for (int j = 0; j < 2; ++j) {
        const int d = i + j * half;
        const float got = rotated(head.data(), d, half, cos_row.data(), sin_row.data());
        if (!(std::fabs(got - want[j]) <= 1e-5 * (std::fabs(re) + std::fabs(im) + 1.0)) && ++failures <= 20) {
          std::printf("FAIL rotated: half %d element %d: %.7g, want %.7g\n", half, d, got, want[j]);
        }
      }
    }
  }
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  for (int64_t first : {0, 1, 5, 63, 100, 1000}) {
    for (int64_t tokens : {1, 2, 3, 17, 64}) {
      for (int splits : {1, 2, 3, 7, 17, 64}) {
        for (int per_step : {1, 2, 4}) check(first, tokens, splits, per_step, rng);
      }
    }
  }
  check_rotation(rng);
  if (failures == 0) std::printf("all checks passed\n");
  return failures == 0 ? 0 : 1;
}
