// sampler.h: picks the next token from a step's logits, as Hugging Face transformers would.
//
// The processors run in transformers' order (generation/utils.py, _get_logits_processor):
//   1. repetition penalty  logit > 0 ? logit / p : logit * p, once per distinct id in the context
//   2. temperature         logit / t; t = 0 means greedy: argmax of step 1, lowest id on ties
//   3. top-k               drop logits below the k-th largest (ties with it stay)
//   4. top-p               drop the least likely tokens whose total probability is <= 1 - top_p
//   5. min-p               drop tokens less likely than min_p times the most likely one
// then a softmax over the survivors and one draw. Each filter keeps at least one token
// (transformers' min_tokens_to_keep = 1).
//
// Ties at the top-p boundary: transformers sorts with torch.sort, whose order among equal values
// is unspecified for more than a few dozen entries; here the lower id goes first, as in a stable
// ascending sort.
//
// The draws come from our own xoshiro256** and our own exp(), sums run in a fixed order and
// fused multiply-adds are switched off, so the same seed and the same logits give the same
// tokens whatever the compiler, standard library or instruction set (checked on x86-64 with
// GCC: SSE2, AVX2 and -march=native builds, -O0 to -O3).
//
// Cost per step: one pass over the vocabulary for greedy and top-k; a few for the rest, and no
// sort of the vocabulary (tools/bench_sampler.py measures it).
//
// Numbers: probabilities are right to ~1e-7 (exp to about 1 ulp, sums in double); torch's
// float32 softmax over 128k ids is off by up to ~5e-6, so a token whose top-p cumulative
// probability lies within that of 1 - top_p may be kept by one and dropped by the other.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace awq_edge {

struct SamplingParams {
  float temperature = 1.0f;         // >= 0; 0 = greedy (argmax)
  int32_t top_k = 0;                // >= 0; 0 = off; more than the vocabulary = off
  float top_p = 1.0f;               // in (0, 1]; 1 = off
  float min_p = 0.0f;               // in [0, 1); 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off
  uint64_t seed = 0x5eed;           // same seed + same inputs = same tokens

  bool greedy() const { return temperature == 0.0f; }

  // Throws std::invalid_argument naming the field and its value:
  // "[Sampler] top_p must be in (0, 1], got 1.5".
  void validate() const;
};

class Sampler {
 public:
  // Validates params; vocab_size must be >= 1.
  Sampler(const SamplingParams& params, int32_t vocab_size);

  // logits: (vocab_size,) float32, used as scratch (the penalised, temperature-scaled values).
  // context: the token ids so far (prompt + generated), for the repetition penalty.
  // Throws std::invalid_argument for a NaN or +inf logit, all logits -inf, or a context id
  // outside [0, vocab_size).
  int32_t sample(float* logits, const int32_t* context, size_t context_size);

  // Restart the random stream as if constructed with this seed.
  void reset(uint64_t seed);

  // (vocab_size,) the distribution sample() would draw from for these inputs (one-hot when
  // greedy). Leaves logits untouched and the random stream where it was.
  std::vector<float> probabilities(const float* logits, const int32_t* context, size_t context_size) const;

  const SamplingParams& params() const { return params_; }
  int32_t vocab_size() const { return vocab_size_; }

 private:
  // Scratch space reused between steps, so that a step allocates nothing.
  struct Workspace {
    std::vector<float> weights;       // (vocab,) exp(logit - max logit), valid for the candidates
    std::vector<int32_t> candidates;  // increasing ids still in the running, unless all_ids
    std::vector<int32_t> bucket;      // top-p's radix select: the ids in the chosen bucket
    std::vector<int32_t> next_bucket;
    std::vector<float> block_max;     // (vocab / 64 rounded up,) the largest logit of each block of 64 ids
    std::vector<float> top_k_values;  // top-k's candidates for the k-th largest logit
    std::vector<uint8_t> penalised;   // (vocab,) 1 for context ids already penalised this step
  };

  // What the filters leave: one greedy token, or the candidates with their weights.
  struct Survivors {
    int32_t greedy_token = -1;  // >= 0 when greedy; nothing else is set then
    bool all_ids = false;       // every id survives, workspace.candidates is not used
    double total_weight = 0.0;  // the survivors' weights summed in chunks (see chunked_total)
  };

  Survivors select(float* logits, const int32_t* context, size_t context_size, Workspace& workspace) const;
  double next_uniform();               // [0, 1), 53 random bits

  SamplingParams params_;
  int32_t vocab_size_;
  std::array<uint64_t, 4> rng_state_;  // xoshiro256**
  Workspace workspace_;
};

}  // namespace awq_edge
