// sampler.cpp: transformers' repetition penalty, temperature, top-k, top-p and min-p, without
// sorting the vocabulary (see sampler.h for the semantics).
//
// A step, for a vocabulary of V ids:
//   penalty      over the distinct context ids
//   scan         one vectorised pass: reject NaN / +inf, find the max (greedy ends here) and the
//                max of every block of 64 ids, which lets the passes below skip blocks
//   top-k        nth_element over the block maxima bounds the k-th largest logit from below;
//                only the (< k) blocks above that bound are read
//   weights      exp(logit / temperature - max) of the candidates: every id unless top-k ran
//                (vectorised; exp_nonpositive below)
//   top-p        keep the ids within a few nats of the top, as deep as needed for what is left
//                out to be certainly dropped; linear-bin radix select on the logits over those
//                finds the last kept (logit, id)
//   min-p        a threshold on the weights
//   draw         a uniform in [0, 1) times the total weight, found chunk by chunk
// All sums run in a fixed order, so the result does not depend on the compiler or the library.
// On x86-64 Linux the vectorised passes are also compiled for AVX2 and picked at load time.
#include "awq_edge/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

// The arithmetic must round the same everywhere: no fused multiply-adds behind our back, even
// when the target has them (-march=native). GCC contracts by default in C++, clang within
// expressions.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace awq_edge {

namespace {

constexpr float kInfinity = std::numeric_limits<float>::infinity();

// An AVX2 copy of a function next to the baseline one, chosen at load time (GNU ifunc). AVX2
// alone, without FMA, rounds exactly as SSE2 does. Not under ThreadSanitizer, which instruments the
// resolver that the dynamic loader calls before TSan has started (a crash at load).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(__SANITIZE_THREAD__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument("[Sampler] " + message); }

std::string show(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// ---------------------------------------------------------------------------------------------
// Randomness: splitmix64 to seed, xoshiro256** to draw (https://prng.di.unimi.it/).
// ---------------------------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotate_left(uint64_t x, int bits) { return (x << bits) | (x >> (64 - bits)); }

// ---------------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------------

inline uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// An order-preserving integer key of a float: a < b exactly when key(a) < key(b), for all but
// NaN (positive NaNs key above +inf, negative ones below -inf). -0 is keyed as +0, its equal.
// Signed, because SSE2 compares signed 32-bit integers only.
inline int32_t order_key(float value) {
  const int32_t bits = static_cast<int32_t>(bits_of(value + 0.0f));  // -0 + 0 = +0
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

// exp(x) for x <= 0, with Cephes' expf polynomial (about 1 ulp; exp(0) is exactly 1). Our own
// rather than std::exp so that every platform gets the same bits and the loop vectorises; below
// -87 the result would be subnormal and is 0. The selects work on bits because compilers do not
// vectorise float comparisons in branches (they might trap).
inline float exp_nonpositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;  // ln 2 = kLn2High + kLn2Low, High exact in 9 bits
  constexpr float kLn2Low = -2.12194440e-4f;
  constexpr float kRoundToInteger = 12582912.0f;  // 1.5 * 2^23: adding then subtracting it rounds
  constexpr uint32_t kMinus87Bits = 0xc2ae0000u;  // for x <= 0, x < -87 exactly when bits > these
  const uint32_t x_bits = bits_of(x);
  const bool underflows = x_bits > kMinus87Bits;
  const float clamped = float_of(underflows ? kMinus87Bits : x_bits);
  const float n = (clamped * kLog2e + kRoundToInteger) - kRoundToInteger;  // in -126..0
  const float r = (clamped - n * kLn2High) - n * kLn2Low;                    // in [-ln2/2, ln2/2]
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float exp_r = p * r * r + r + 1.0f;
  const float two_to_n = float_of(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return float_of(bits_of(exp_r * two_to_n) & (underflows ? 0u : ~0u));
}

// Sums of weights are taken over chunks of this many entries, each in kLanes interleaved
// partial sums: a fixed order (so the same bits everywhere) that is not one long dependency chain.
constexpr size_t kChunk = 256;
constexpr size_t kLanes = 8;

// weight(i) for i in [begin, end) summed in the fixed order.
template <typename Weight>
VECTOR_CLONES double chunk_sum(size_t begin, size_t end, const Weight& weight) {
  double lanes[kLanes] = {};
  size_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (size_t lane = 0; lane < kLanes; ++lane) lanes[lane] += weight(i + lane);
  }
  for (size_t lane = 0; i < end; ++i, ++lane) lanes[lane] += weight(i);
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  return sum;
}

template <typename Weight>
double chunked_total(size_t count, const Weight& weight) {
  double total = 0.0;
  for (size_t begin = 0; begin < count; begin += kChunk) {
    total += chunk_sum(begin, std::min(begin + kChunk, count), weight);
  }
  return total;
}

// The position whose weight covers target (in [0, total)), finding its chunk by chunk sums
// the way chunked_total added them; rounding inside the chunk falls back to its last weighted
// position.
template <typename Weight>
size_t find_weighted_position(size_t count, const Weight& weight, double target) {
  double below = 0.0;
  size_t begin = 0;
  for (; begin + kChunk < count; begin += kChunk) {
    const double sum = chunk_sum(begin, begin + kChunk, weight);
    if (below + sum > target) break;
    below += sum;
  }
  const size_t end = std::min(begin + kChunk, count);
  size_t last_weighted = begin;
  for (size_t i = begin; i < end; ++i) {
    if (weight(i) <= 0.0f) continue;
    last_weighted = i;
    below += weight(i);
    if (below > target) break;
  }
  return last_weighted;
}

// ---------------------------------------------------------------------------------------------
// Passes over the vocabulary. The scan records the largest logit of every block of kBlock ids;
// later passes skip the blocks whose largest logit is below what they look for, and so read
// only the few blocks that hold likely tokens.
// ---------------------------------------------------------------------------------------------

constexpr size_t kBlock = 64;

// The inverse of order_key (the key's transformation is its own inverse).
inline float from_order_key(int32_t key) { return float_of(static_cast<uint32_t>(key ^ ((key >> 31) & 0x7fffffff))); }

// What one pass over the logits finds: the largest and smallest order keys, the first id
// holding the largest, and block_max[b] = the largest logit of ids [b * kBlock, (b + 1) * kBlock).
struct LogitRange {
  int32_t max_key = std::numeric_limits<int32_t>::min();
  int32_t min_key = std::numeric_limits<int32_t>::max();
  int32_t first_max_id = 0;
};

VECTOR_CLONES LogitRange scan_logits(const float* logits, size_t count, std::vector<float>& block_max) {
  LogitRange range;
  block_max.clear();
  size_t max_block = 0;
  for (size_t begin = 0; begin < count; begin += kBlock) {
    const size_t end = std::min(begin + kBlock, count);
    int32_t block_max_key = std::numeric_limits<int32_t>::min();
    int32_t block_min_key = std::numeric_limits<int32_t>::max();
    for (size_t i = begin; i < end; ++i) {
      const int32_t key = order_key(logits[i]);
      block_max_key = key > block_max_key ? key : block_max_key;
      block_min_key = key < block_min_key ? key : block_min_key;
    }
    block_max.push_back(from_order_key(block_max_key));
    if (block_max_key > range.max_key || begin == 0) {
      range.max_key = block_max_key;
      max_block = begin;
    }
    range.min_key = block_min_key < range.min_key ? block_min_key : range.min_key;
  }
  size_t id = max_block;
  while (order_key(logits[id]) != range.max_key) ++id;
  range.first_max_id = static_cast<int32_t>(id);
  return range;
}

// weights[i] = exp(logits[i] / temperature - max_logit), the quotients stored back into logits.
VECTOR_CLONES void weigh_all(float* logits, float* weights, size_t count, float temperature, float max_logit) {
  if (temperature == 1.0f) {
    for (size_t i = 0; i < count; ++i) weights[i] = exp_nonpositive(logits[i] - max_logit);
  } else {
    for (size_t i = 0; i < count; ++i) {
      logits[i] /= temperature;
      weights[i] = exp_nonpositive(logits[i] - max_logit);
    }
  }
}

// Appends every i in [0, count) with values[i] >= threshold, in order. With block_max, a block
// is read only if block_max[b] / divisor reaches the threshold (dividing keeps the order, so
// the scan's block maxima bound the quotients too). A block is first counted (vectorised), then
// its ids written branch-free: a branch on a coin flip costs more than the write.
VECTOR_CLONES void gather_at_least(const float* values, size_t count, float threshold, const float* block_max,
                                   float divisor, std::vector<int32_t>& out) {
  int32_t kept[kBlock];
  for (size_t begin = 0, block = 0; begin < count; begin += kBlock, ++block) {
    if (block_max != nullptr && !(block_max[block] / divisor >= threshold)) continue;
    const size_t end = std::min(begin + kBlock, count);
    uint32_t hits = 0;
    for (size_t i = begin; i < end; ++i) hits += values[i] >= threshold;
    if (hits == 0) continue;
    size_t n = 0;
    for (size_t i = begin; i < end; ++i) {
      kept[n] = static_cast<int32_t>(i);
      n += values[i] >= threshold;
    }
    out.insert(out.end(), kept, kept + n);
  }
}

// The k-th largest of values[0, count) (0 < k < count), or -inf when fewer than k exceed -inf.
// The k-th largest block maximum is a floor: those k blocks hold k values at least that large.
// So only the blocks whose maximum is above it are read (fewer than k), and if they hold fewer
// than k values above it, the floor is the answer.
float kth_largest(const float* values, size_t count, size_t k, const std::vector<float>& block_max,
                  std::vector<float>& buffer) {
  float floor = -kInfinity;
  if (block_max.size() >= k) {
    buffer = block_max;
    std::nth_element(buffer.begin(), buffer.begin() + (k - 1), buffer.end(), std::greater<float>());
    floor = buffer[k - 1];
  }
  buffer.clear();
  for (size_t begin = 0, block = 0; begin < count; begin += kBlock, ++block) {
    if (!(block_max[block] > floor)) continue;
    for (size_t i = begin; i < std::min(begin + kBlock, count); ++i) {
      if (values[i] > floor) buffer.push_back(values[i]);
    }
  }
  if (buffer.size() < k) return floor;
  std::nth_element(buffer.begin(), buffer.begin() + (k - 1), buffer.end(), std::greater<float>());
  return buffer[k - 1];
}

// The smallest logit whose quotient by the temperature is still >= scaled_threshold: rounding
// can map a few logits just below the unscaled threshold onto it, and transformers compares
// after dividing. -inf if that reaches further than kMaxSteps floats (absurd temperatures).
float lowest_logit_scaling_to(float threshold, float temperature, float scaled_threshold) {
  constexpr int kMaxSteps = 1024;
  float lowest = threshold;
  for (int step = 0; step < kMaxSteps; ++step) {
    const float below = std::nextafter(lowest, -kInfinity);
    if (!(below / temperature >= scaled_threshold)) return lowest;
    lowest = below;
  }
  return -kInfinity;
}

struct RankedToken {
  float logit;
  int32_t id;
};

// Top-p ranks tokens by logit, ties by id (higher first: transformers removes from the bottom
// of an ascending sort, where a stable sort puts the lower id first).
inline bool ranks_at_or_above(float logit, int32_t id, RankedToken boundary) {
  return logit > boundary.logit || (logit == boundary.logit && id >= boundary.id);
}

// Transformers' top-p rule: a token is dropped when the probability ranked at or below it,
// rounded to float32 (torch's cumsum returns float32), is at most 1 - top_p rounded to float32.
// In terms of `above`, the weight ranked above the token: kept while keeps(above).
struct TopPRule {
  double total;         // the weight of every token top-p looks at
  float drop_fraction;  // float32(1 - top_p)

  bool keeps(double above) const { return static_cast<float>((total - above) / total) > drop_fraction; }
};

// The last token top-p keeps among candidates (increasing ids with logits in [low, high],
// non-empty, holding every token it keeps); the first token is always kept. Each level spreads the bucket
// over linear bins of its logit range (a bin never decreases with the logit, so bins keep the
// ranking) and narrows to the lowest bin whose first token is still kept; what is left after a
// few levels is sorted.
RankedToken top_p_boundary(const std::vector<int32_t>& candidates, const float* logits, const float* weights,
                           float low, float high, TopPRule rule, std::vector<int32_t>& bucket,
                           std::vector<int32_t>& next_bucket) {
  constexpr int kBins = 256;
  constexpr size_t kSortAtMost = 64;
  constexpr int kMaxLevels = 4;  // 256^4 bins: what is still together is a few ulps apart
  bucket = candidates;
  double above = 0.0;  // weight ranked above the bucket
  for (int level = 0; level < kMaxLevels && bucket.size() > kSortAtMost; ++level) {
    const float scale = static_cast<float>(kBins) / (high - low);
    if (!(scale > 0.0f && scale < kInfinity)) break;  // equal logits, or a span beyond float
    // Clamped: the bounds of later levels come from bin edges and may miss by a rounding.
    auto bin_of = [&, low = low](int32_t id) {
      return static_cast<int>(std::min(std::max((logits[id] - low) * scale, 0.0f), kBins - 1.0f));
    };
    double bin_weight[kBins] = {};
    uint32_t bin_count[kBins] = {};
    for (int32_t id : bucket) {
      const int bin = bin_of(id);
      bin_weight[bin] += weights[id];
      ++bin_count[bin];
    }
    int chosen = -1;
    double chosen_above = above;
    for (int bin = kBins - 1; bin >= 0; --bin) {
      if (bin_count[bin] == 0) continue;
      if (chosen >= 0 && !rule.keeps(above)) break;
      chosen = bin;
      chosen_above = above;
      above += bin_weight[bin];
    }
    above = chosen_above;
    next_bucket.resize(bucket.size());
    size_t kept = 0;
    for (int32_t id : bucket) {  // branch-free: about half of them may stay
      next_bucket[kept] = id;
      kept += bin_of(id) == chosen;
    }
    next_bucket.resize(kept);
    std::swap(bucket, next_bucket);
    high = low + static_cast<float>(chosen + 1) / scale;
    low = low + static_cast<float>(chosen) / scale;
  }
  // Rank what is left: logit descending, then id descending (the bucket is in increasing ids,
  // so equal logits, the common case here, need only a reversal).
  const bool all_equal = std::all_of(bucket.begin(), bucket.end(),
                                     [&](int32_t id) { return logits[id] == logits[bucket.front()]; });
  if (all_equal) {
    std::reverse(bucket.begin(), bucket.end());
  } else {
    std::sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a > b);
    });
  }
  size_t last = 0;
  for (size_t i = 0; i < bucket.size(); ++i) {
    if (i > 0 && !rule.keeps(above)) break;
    last = i;
    above += weights[bucket[i]];
  }
  return {logits[bucket[last]], bucket[last]};
}

// Every id top-p might keep (and more), in increasing order, without looking at the order of
// the many unlikely ones: the ids with logits within some depth of the top. A depth is enough
// when the ids below it weigh so little that top-p drops each of them whatever the order (all
// ids ranked below one of them are below the cutoff too). Deeper cutoffs cost one more pass.
// Returns the cutoff: no candidate's logit is below it.
float gather_top_p_candidates(const float* logits, const float* weights, size_t vocab, float max_logit,
                             const std::vector<float>& block_max, float temperature, TopPRule rule,
                             std::vector<int32_t>& candidates) {
  for (float depth : {4.0f, 8.0f, 16.0f, 32.0f, 64.0f}) {  // nats below the top logit
    const float cutoff = max_logit - depth;
    candidates.clear();
    gather_at_least(logits, vocab, cutoff, block_max.data(), temperature, candidates);
    const double candidate_weight = chunked_total(candidates.size(), [&](size_t i) { return weights[candidates[i]]; });
    // The margin covers the rounding of sums taken in different orders.
    const double left_out = rule.total - candidate_weight;
    if (left_out <= rule.drop_fraction * rule.total * (1.0 - 1e-9)) return cutoff;
  }
  candidates.clear();
  // Weightless ids are dropped.
  gather_at_least(weights, vocab, std::numeric_limits<float>::denorm_min(), nullptr, 1.0f, candidates);
  return max_logit - 88.0f;  // exp_nonpositive is 0 below -87
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SamplingParams
// ---------------------------------------------------------------------------------------------

void SamplingParams::validate() const {
  if (!(temperature >= 0.0f && temperature < kInfinity)) {
    fail("temperature must be a finite number >= 0 (0 = greedy), got " + show(temperature));
  }
  if (top_k < 0) fail("top_k must be >= 0 (0 = off), got " + std::to_string(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("top_p must be in (0, 1] (1 = off), got " + show(top_p));
  if (!(min_p >= 0.0f && min_p < 1.0f)) fail("min_p must be in [0, 1) (0 = off), got " + show(min_p));
  if (!(repetition_penalty > 0.0f && repetition_penalty < kInfinity)) {
    fail("repetition_penalty must be a finite number > 0 (1 = off), got " + show(repetition_penalty));
  }
}

// ---------------------------------------------------------------------------------------------
// Sampler
// ---------------------------------------------------------------------------------------------

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size) : params_(params), vocab_size_(vocab_size) {
  params_.validate();
  if (vocab_size < 1) fail("vocab_size must be >= 1, got " + std::to_string(vocab_size));
  reset(params_.seed);
}

void Sampler::reset(uint64_t seed) {
  params_.seed = seed;
  uint64_t state = seed;
  for (uint64_t& word : rng_state_) word = splitmix64(state);
}

double Sampler::next_uniform() {
  uint64_t* s = rng_state_.data();
  const uint64_t result = rotate_left(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotate_left(s[3], 45);
  return static_cast<double>(result >> 11) * 0x1.0p-53;
}

Sampler::Survivors Sampler::select(float* logits, const int32_t* context, size_t context_size,
                                   Workspace& workspace) const {
  const size_t vocab = static_cast<size_t>(vocab_size_);
  for (size_t i = 0; i < context_size; ++i) {
    if (context[i] < 0 || context[i] >= vocab_size_) {
      fail("context[" + std::to_string(i) + "] = " + std::to_string(context[i]) +
           " is not a token id: the vocabulary has " + std::to_string(vocab_size_) + " ids");
    }
  }

  // Repetition penalty, once per distinct id: transformers scatters one value per id.
  if (params_.repetition_penalty != 1.0f) {
    std::vector<uint8_t>& penalised = workspace.penalised;
    penalised.resize(vocab);
    for (size_t i = 0; i < context_size; ++i) {
      const int32_t id = context[i];
      if (penalised[static_cast<size_t>(id)]) continue;
      penalised[static_cast<size_t>(id)] = 1;
      float& logit = logits[id];
      logit = logit < 0.0f ? logit * params_.repetition_penalty : logit / params_.repetition_penalty;
    }
    for (size_t i = 0; i < context_size; ++i) penalised[static_cast<size_t>(context[i])] = 0;
  }

  // NaN and +inf have no place in a distribution.
  const LogitRange range = scan_logits(logits, vocab, workspace.block_max);
  if (range.max_key >= order_key(kInfinity) || range.min_key < order_key(-kInfinity)) {
    for (size_t i = 0; i < vocab; ++i) {
      if (std::isnan(logits[i]) || logits[i] == kInfinity) {
        fail("logits[" + std::to_string(i) + "] is " + (std::isnan(logits[i]) ? "NaN" : "+inf") +
             ": the model produced invalid numbers");
      }
    }
  }
  if (range.max_key == order_key(-kInfinity)) fail("every logit is -inf: there is no token to choose");
  Survivors survivors;
  if (params_.greedy()) {
    survivors.greedy_token = range.first_max_id;
    return survivors;
  }

  // Temperature: transformers divides in float32. Division keeps the order, so the top logit
  // and the k-th largest can be divided alone.
  const float temperature = params_.temperature;
  const float max_logit = logits[range.first_max_id] / temperature;
  if (max_logit == kInfinity) {
    fail("temperature " + show(temperature) + " turns logits[" + std::to_string(range.first_max_id) + "] = " +
         show(logits[range.first_max_id]) + " into +inf; use a larger temperature, or 0 for greedy");
  }
  std::vector<float>& weights = workspace.weights;  // the softmax numerators
  std::vector<int32_t>& candidates = workspace.candidates;
  weights.resize(vocab);
  candidates.clear();
  const size_t top_k = static_cast<size_t>(params_.top_k);
  const float top_k_threshold = top_k > 0 && top_k < vocab
                                    ? kth_largest(logits, vocab, top_k, workspace.block_max, workspace.top_k_values)
                                    : -kInfinity;
  bool all_ids = top_k_threshold == -kInfinity;
  float lowest_candidate = -kInfinity;  // no candidate's logit is below it (once divided)
  if (all_ids) {
    weigh_all(logits, weights.data(), vocab, temperature, max_logit);
  } else {
    // Top-k: keep the logits at or above the k-th largest, after dividing (ties stay).
    const float scaled_threshold = top_k_threshold / temperature;
    lowest_candidate = scaled_threshold;
    const float lowest = lowest_logit_scaling_to(top_k_threshold, temperature, scaled_threshold);
    gather_at_least(logits, vocab, lowest, workspace.block_max.data(), 1.0f, candidates);
    size_t kept = 0;
    for (int32_t id : candidates) {
      logits[id] /= temperature;
      if (logits[id] < scaled_threshold) continue;
      weights[id] = exp_nonpositive(logits[id] - max_logit);
      candidates[kept++] = id;
    }
    candidates.resize(kept);
  }
  // Reads all_ids and candidates as they are at the call: the filters below narrow them.
  auto candidate_weight = [&](size_t position) { return all_ids ? weights[position] : weights[candidates[position]]; };

  // Top-p (TopPRule), over what top-k left.
  if (params_.top_p < 1.0f) {
    const size_t candidate_count = all_ids ? vocab : candidates.size();
    const TopPRule rule{chunked_total(candidate_count, candidate_weight),
                        static_cast<float>(1.0 - static_cast<double>(params_.top_p))};
    if (all_ids) {
      lowest_candidate = gather_top_p_candidates(logits, weights.data(), vocab, max_logit, workspace.block_max,
                                                 temperature, rule, candidates);
      all_ids = false;
    }
    const RankedToken boundary =
        top_p_boundary(candidates, logits, weights.data(), lowest_candidate, max_logit, rule, workspace.bucket,
                       workspace.next_bucket);
    size_t kept = 0;
    for (int32_t id : candidates) {  // branch-free: the nucleus may be large
      candidates[kept] = id;
      kept += ranks_at_or_above(logits[id], id, boundary);
    }
    candidates.resize(kept);
  }

  // Min-p: probability >= min_p * the top probability, i.e. weight >= min_p (the top weighs 1).
  if (params_.min_p > 0.0f) {
    const float min_p = params_.min_p;
    if (all_ids) {
      gather_at_least(weights.data(), vocab, min_p, nullptr, 1.0f, candidates);
      all_ids = false;
    } else {
      candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                      [&](int32_t id) { return weights[id] < min_p; }),
                       candidates.end());
    }
  }

  survivors.all_ids = all_ids;
  survivors.total_weight = chunked_total(all_ids ? vocab : candidates.size(), candidate_weight);
  return survivors;
}

int32_t Sampler::sample(float* logits, const int32_t* context, size_t context_size) {
  const Survivors survivors = select(logits, context, context_size, workspace_);
  if (survivors.greedy_token >= 0) return survivors.greedy_token;
  const std::vector<float>& weights = workspace_.weights;
  const std::vector<int32_t>& candidates = workspace_.candidates;
  const double target = next_uniform() * survivors.total_weight;
  if (survivors.all_ids) {
    const size_t id = find_weighted_position(weights.size(), [&](size_t i) { return weights[i]; }, target);
    return static_cast<int32_t>(id);
  }
  const size_t position =
      find_weighted_position(candidates.size(), [&](size_t i) { return weights[candidates[i]]; }, target);
  return candidates[position];
}

std::vector<float> Sampler::probabilities(const float* logits, const int32_t* context, size_t context_size) const {
  std::vector<float> scratch_logits(logits, logits + vocab_size_);
  Workspace workspace;
  const Survivors survivors = select(scratch_logits.data(), context, context_size, workspace);
  std::vector<float> probabilities(static_cast<size_t>(vocab_size_), 0.0f);
  if (survivors.greedy_token >= 0) {
    probabilities[static_cast<size_t>(survivors.greedy_token)] = 1.0f;
    return probabilities;
  }
  auto set = [&](int32_t id) {
    probabilities[static_cast<size_t>(id)] =
        static_cast<float>(static_cast<double>(workspace.weights[static_cast<size_t>(id)]) / survivors.total_weight);
  };
  if (survivors.all_ids) {
    for (int32_t id = 0; id < vocab_size_; ++id) set(id);
  } else {
    for (int32_t id : workspace.candidates) set(id);
  }
  return probabilities;
}

}  // namespace awq_edge
