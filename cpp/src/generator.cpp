// generator.cpp: the generation loop, stop conditions and text streaming.
#include "awq_edge/generator.h"

#include <algorithm>
#include <chrono>

namespace awq_edge {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The length of the longest suffix of text that is a proper prefix of some stop string: text
// that must be held back because the next token may complete a stop string.
size_t possible_stop_prefix(std::string_view text, const std::vector<std::string>& stops) {
  size_t longest = 0;
  for (const std::string& stop : stops) {
    const size_t limit = std::min(text.size(), stop.size() - 1);
    for (size_t length = limit; length > longest; --length) {
      if (text.substr(text.size() - length) == std::string_view(stop).substr(0, length)) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Context: return "context";
  }
  return "none";
}

Generator::Generator(const std::string& path, const GeneratorOptions& options) {
  const Clock::time_point start = Clock::now();
  file_ = std::make_shared<const ModelFile>(path, options.verify_checksums);
  backend_ = create_backend(options.backend, options.backend_options);
  model_ = std::make_unique<Model>(file_, backend_, options.model_options);
  const json::Value& metadata = file_->metadata();
  tokenizer_ = std::make_unique<Tokenizer>(
      Tokenizer::from_metadata(*metadata.find("tokenizer"), *metadata.find("config")));
  logits_.resize(static_cast<size_t>(model_->config().vocab_size));
  load_seconds_ = seconds_since(start);
}

Generator::~Generator() = default;

std::vector<int32_t> Generator::tokenize(std::string_view text, bool add_special_tokens) const {
  return tokenizer_->encode(text, add_special_tokens);
}

std::string Generator::detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const int64_t vocab = model_->config().vocab_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw GeneratorError("[Generator] token id " + std::to_string(ids[i]) + " at index " +
                           std::to_string(i) + " is out of range (the vocabulary has " +
                           std::to_string(vocab) + " tokens)");
    }
  }
  return tokenizer_->decode(ids, skip_special_tokens);
}

void Generator::reset() {
  model_->truncate(0);
  cached_.clear();
  result_ = {};
  sampler_.reset();
  stream_.reset();
}

std::vector<float> Generator::forward(const std::vector<int32_t>& tokens, bool all_logits) {
  if (tokens.empty()) throw GeneratorError("[Generator] forward() needs at least one token");
  const int64_t vocab = model_->config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab) * (all_logits ? tokens.size() : 1));
  model_->forward(tokens.data(), static_cast<int64_t>(tokens.size()), logits.data(), all_logits);
  cached_.insert(cached_.end(), tokens.begin(), tokens.end());
  std::copy(logits.end() - vocab, logits.end(), logits_.begin());
  return logits;
}

void Generator::prefill(const std::vector<int32_t>& prompt, const StopCheck& should_stop) {
  // Reuse the cached prefix, but run at least the last prompt token: its logits are needed.
  size_t common = 0;
  const size_t limit = std::min(cached_.size(), prompt.size() - 1);
  while (common < limit && cached_[common] == prompt[common]) ++common;
  model_->truncate(static_cast<int64_t>(common));
  cached_.resize(common);
  result_.stats.cached_tokens = static_cast<int64_t>(common);

  const size_t chunk = static_cast<size_t>(model_->prefill_chunk());
  for (size_t done = common; done < prompt.size(); done += chunk) {
    if (should_stop && should_stop()) throw Interrupted();
    const size_t count = std::min(chunk, prompt.size() - done);
    const bool last = done + count == prompt.size();
    model_->forward(prompt.data() + done, static_cast<int64_t>(count), last ? logits_.data() : nullptr);
    cached_.insert(cached_.end(), prompt.begin() + static_cast<ptrdiff_t>(done),
                   prompt.begin() + static_cast<ptrdiff_t>(done + count));
  }
}

void Generator::start(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                      const StopCheck& should_stop) {
  const ModelConfig& config = model_->config();
  if (prompt.empty()) {
    throw GeneratorError("[Generator] the prompt is empty: give at least one token");
  }
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= config.vocab_size) {
      throw GeneratorError("[Generator] prompt token id " + std::to_string(prompt[i]) + " at index " +
                           std::to_string(i) + " is out of range (the vocabulary has " +
                           std::to_string(config.vocab_size) + " tokens, ids 0.." +
                           std::to_string(config.vocab_size - 1) + ")");
    }
  }
  if (static_cast<int64_t>(prompt.size()) > model_->max_context()) {
    throw GeneratorError("[Generator] the prompt has " + std::to_string(prompt.size()) +
                         " tokens but the context holds " + std::to_string(model_->max_context()) +
                         "; shorten the prompt or raise max_context (the model allows " +
                         std::to_string(config.max_position_embeddings) + ")");
  }
  if (options.max_new_tokens < 0) {
    throw GeneratorError("[Generator] max_new_tokens must be >= 0, got " +
                         std::to_string(options.max_new_tokens));
  }
  for (int32_t id : options.stop_token_ids) {
    if (id < 0 || id >= config.vocab_size) {
      throw GeneratorError("[Generator] stop token id " + std::to_string(id) + " is out of range");
    }
  }
  for (const std::string& stop : options.stop_strings) {
    if (stop.empty()) throw GeneratorError("[Generator] stop strings must not be empty");
  }
  options.sampling.validate();

  options_ = options;
  result_ = {};
  held_back_.clear();
  text_closed_ = false;
  sampler_ = std::make_unique<Sampler>(options.sampling, static_cast<int32_t>(config.vocab_size));
  stream_ = std::make_unique<TextStream>(*tokenizer_, /*skip_special_tokens=*/true);
  result_.stats.prompt_tokens = static_cast<int64_t>(prompt.size());

  const Clock::time_point begin = Clock::now();
  prefill(prompt, should_stop);
  result_.stats.prefill_seconds = seconds_since(begin);
  if (options.max_new_tokens == 0) finish(FinishReason::Length);
}

bool Generator::is_stop_token(int32_t id) const {
  const std::vector<int32_t>& eos = model_->config().eos_token_ids;
  if (!options_.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) return true;
  return std::find(options_.stop_token_ids.begin(), options_.stop_token_ids.end(), id) !=
         options_.stop_token_ids.end();
}

void Generator::finish(FinishReason reason) {
  if (result_.finish_reason == FinishReason::None) result_.finish_reason = reason;
}

// Adds a decoded piece to the text and returns what can be shown now: everything up to a stop
// string (which ends generation), minus a tail that may still become one (unless final).
std::string Generator::release_text(std::string piece, bool final) {
  if (text_closed_) return {};  // a stop string ended the text
  held_back_ += piece;
  size_t stop_at = std::string::npos;
  for (const std::string& stop : options_.stop_strings) {
    stop_at = std::min(stop_at, held_back_.find(stop));
  }
  std::string released;
  if (stop_at != std::string::npos) {
    released = held_back_.substr(0, stop_at);
    held_back_.clear();
    text_closed_ = true;
    finish(FinishReason::Stop);
  } else {
    const size_t keep = final ? 0 : possible_stop_prefix(held_back_, options_.stop_strings);
    released = held_back_.substr(0, held_back_.size() - keep);
    held_back_.erase(0, held_back_.size() - keep);
  }
  result_.text += released;
  return released;
}

std::optional<std::string> Generator::next(const StopCheck& should_stop) {
  if (!sampler_) throw GeneratorError("[Generator] next() before start()");
  if (result_.finish_reason != FinishReason::None) {
    if (stream_ == nullptr) return std::nullopt;
    std::string rest = release_text(stream_->flush(), true);  // the tail held for a character
    stream_.reset();
    return rest;
  }
  if (should_stop && should_stop()) throw Interrupted();

  const Clock::time_point begin = Clock::now();
  const int32_t token = sampler_->sample(logits_.data(), cached_.data(), cached_.size());
  result_.tokens.push_back(token);
  ++result_.stats.generated_tokens;

  std::string text;
  if (is_stop_token(token)) {
    finish(FinishReason::Stop);
  } else {
    text = release_text(stream_->push(token), false);
  }
  if (result_.finish_reason == FinishReason::None) {
    if (result_.stats.generated_tokens >= options_.max_new_tokens) {
      finish(FinishReason::Length);
    } else if (static_cast<int64_t>(cached_.size()) >= model_->max_context()) {
      finish(FinishReason::Context);
    } else {
      model_->forward(&token, 1, logits_.data());
      cached_.push_back(token);
    }
  }
  if (result_.finish_reason != FinishReason::None && stream_ != nullptr) {
    text += release_text(stream_->flush(), true);
    stream_.reset();
  }
  result_.stats.decode_seconds += seconds_since(begin);
  return text;
}

GenerationResult Generator::generate(const std::vector<int32_t>& prompt,
                                     const GenerationOptions& options, const TextCallback& on_text,
                                     const StopCheck& should_stop) {
  start(prompt, options, should_stop);
  while (std::optional<std::string> piece = next(should_stop)) {
    if (on_text && !piece->empty() && !on_text(*piece)) finish(FinishReason::Stop);
  }
  return result_;
}

}  // namespace awq_edge
