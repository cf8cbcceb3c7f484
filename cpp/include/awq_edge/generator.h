// generator.h: text generation, the loop users call: tokenize -> prefill -> (sample -> decode)*
// -> stream text. Owns the model file, a backend, the decoder, the tokenizer and a sampler.
//
//   Generator generator("model.awqe");
//   GenerationOptions options;
//   options.max_new_tokens = 64;
//   generator.generate(generator.tokenize("Once upon a time"), options,
//                      [](std::string_view piece) { std::cout << piece << std::flush; return true; });
//
// The KV cache outlives a call: a prompt that starts with the tokens of the previous call
// (a chat's history) only runs its new tokens through the model. reset() forgets them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "awq_edge/backends.h"
#include "awq_edge/model.h"
#include "awq_edge/model_file.h"
#include "awq_edge/sampler.h"
#include "awq_edge/tokenizer.h"

namespace awq_edge {

// "[Generator] <problem>": invalid generation arguments.
class GeneratorError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Raised out of generate()/start()/next() when the should_stop callback asks to stop.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("[Generator] interrupted") {}
};

struct GeneratorOptions {
  std::string backend = "auto";     // see backends.h
  BackendOptions backend_options;   // threads, CPU kernel level
  ModelOptions model_options;       // max_context, prefill_chunk
  bool verify_checksums = true;     // CRC-32 of every tensor at open (reads the whole file once)
};

struct GenerationOptions {
  int64_t max_new_tokens = 256;             // >= 0
  SamplingParams sampling;                  // temperature 0 = greedy
  std::vector<int32_t> stop_token_ids;      // besides the model's end-of-sequence ids
  std::vector<std::string> stop_strings;    // generation ends before the first occurrence
  bool ignore_eos = false;                  // keep going past end-of-sequence tokens
};

enum class FinishReason {
  None,       // still running
  Stop,       // an end-of-sequence token, a stop token or a stop string
  Length,     // max_new_tokens reached
  Context,    // the context (max_context positions) is full
};
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "context"

struct GenerationStats {
  int64_t prompt_tokens = 0;    // tokens of the prompt
  int64_t cached_tokens = 0;    // of those, reused from the previous call's KV cache
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;   // the prompt's forward passes
  double decode_seconds = 0;    // forward passes of generated tokens, sampling included
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (a stop or end-of-sequence token included)
  std::string text;             // their text without special tokens, cut before a stop string
  FinishReason finish_reason = FinishReason::None;
  GenerationStats stats;
};

class Generator {
 public:
  // Opens and validates the file, creates the backend and uploads the weights.
  explicit Generator(const std::string& path, const GeneratorOptions& options = {});
  ~Generator();

  const ModelConfig& config() const { return model_->config(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelFile& file() const { return *file_; }
  Model& model() { return *model_; }
  Backend& backend() { return *backend_; }
  double load_seconds() const { return load_seconds_; }

  // Prompt text -> ids; with add_special_tokens, BOS/EOS as the tokenizer's configuration says.
  std::vector<int32_t> tokenize(std::string_view text, bool add_special_tokens = true) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // Called between forward passes; returning true aborts with Interrupted.
  using StopCheck = std::function<bool()>;
  // Receives each new piece of text; returning false ends generation (finish reason Stop).
  using TextCallback = std::function<bool(std::string_view piece)>;

  // The whole loop. Throws GeneratorError for an empty prompt, a prompt that does not fit the
  // context, out-of-range ids or invalid options; ModelError-free otherwise.
  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                            const TextCallback& on_text = nullptr,
                            const StopCheck& should_stop = nullptr);

  // The same loop one token at a time, for streaming: start() checks the arguments and runs the
  // prompt; each next() generates one token and returns its new text (possibly empty while a
  // character or a possible stop string is incomplete), or nothing once finished.
  void start(const std::vector<int32_t>& prompt, const GenerationOptions& options,
             const StopCheck& should_stop = nullptr);
  std::optional<std::string> next(const StopCheck& should_stop = nullptr);
  const GenerationResult& result() const { return result_; }

  // Logits of running `tokens` after the cached ones (all rows: n * V floats, or the last
  // row's V floats); for tests and scoring.
  std::vector<float> forward(const std::vector<int32_t>& tokens, bool all_logits);

  // Forgets the KV cache.
  void reset();

 private:
  void prefill(const std::vector<int32_t>& prompt, const StopCheck& should_stop);
  bool is_stop_token(int32_t id) const;
  std::string release_text(std::string piece, bool final);
  void finish(FinishReason reason);

  std::shared_ptr<const ModelFile> file_;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  double load_seconds_ = 0;

  std::vector<int32_t> cached_;        // tokens whose keys and values are in the cache
  std::vector<float> logits_;          // (V,) of the last token in cached_
  // The running generation (between start() and the end).
  GenerationOptions options_;
  GenerationResult result_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<TextStream> stream_;
  std::string held_back_;              // decoded text that may begin a stop string
  bool text_closed_ = false;           // a stop string was found: no more text
};

}  // namespace awq_edge
