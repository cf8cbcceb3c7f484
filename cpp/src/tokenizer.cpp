// tokenizer.cpp: the Tokenizer built from .awqe metadata, running the stages of
// tokenizer_stages.h for encode and decode.
#include "awq_edge/tokenizer.h"

#include <algorithm>
#include <stdexcept>

#include "tokenizer_stages.h"

namespace awq_edge {

namespace tokenizer {

void fail(const std::string& message) { throw std::invalid_argument("[Tokenizer] tokenizer.json: " + message); }

const json::Value& member(const json::Value& object, std::string_view key, std::string_view where) {
  const json::Value* value = object.find(key);
  if (!value) fail(std::string(where) + ": '" + std::string(key) + "' is missing");
  return *value;
}

std::string string_member(const json::Value& object, std::string_view key, std::string_view where) {
  const json::Value& value = member(object, key, where);
  if (!value.is_string()) {
    fail(std::string(where) + "." + std::string(key) + " is a " + value.type_name() + ", not a string");
  }
  return value.as_string();
}

bool bool_member(const json::Value& object, std::string_view key, std::string_view where, bool fallback) {
  const json::Value* value = object.find(key);
  if (!value || value->is_null()) return fallback;
  if (!value->is_bool()) fail(std::string(where) + "." + std::string(key) + " is a " + value->type_name() + ", not a boolean");
  return value->as_bool();
}

std::string type_of(const json::Value& object, std::string_view where) {
  if (!object.is_object()) fail(std::string(where) + " is a " + object.type_name() + ", not an object");
  return string_member(object, "type", where);
}

}  // namespace tokenizer

using namespace tokenizer;

struct Tokenizer::Impl {
  explicit Impl(const json::Value& tokenizer_json) : bpe(member(tokenizer_json, "model", "tokenizer.json")) {}

  Bpe bpe;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher, normalized_matcher;  // tokens with normalized false / true
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  SpecialTokenFrame frame;
  Decoder decoder;
  std::vector<std::string> added_text;  // by id; "" where the model's token applies
  std::vector<bool> special;            // by id
  int32_t vocab_size = 0;
  std::optional<int32_t> bos;
  std::vector<int32_t> eos;

  void tokenize_text(const Piece& piece, std::vector<int32_t>& ids) const {
    std::vector<Piece> words{piece};
    pre_tokenizer.apply(words);
    for (const Piece& word : words) bpe.tokenize(word.text, ids);
  }

  std::vector<std::string> token_strings(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size) {
        throw std::out_of_range("[Tokenizer] decode: token id " + std::to_string(id) +
                                " is outside the vocabulary (0 .. " + std::to_string(vocab_size - 1) + ")");
      }
      if (skip_special_tokens && special[id]) continue;
      tokens.push_back(!added_text[id].empty() ? added_text[id] : bpe.tokens()[id]);
    }
    return tokens;
  }
};

namespace {

std::optional<int32_t> optional_id(const json::Value* value) {
  if (!value || !value->is_int()) return std::nullopt;
  return static_cast<int32_t>(value->as_int());
}

}  // namespace

Tokenizer Tokenizer::from_metadata(const json::Value& tokenizer, const json::Value& config) {
  const json::Value& tokenizer_json = member(tokenizer, "tokenizer_json", "metadata.tokenizer");
  auto impl = std::make_shared<Impl>(tokenizer_json);
  impl->normalizer = Normalizer::parse(member(tokenizer_json, "normalizer", "tokenizer.json"));
  impl->pre_tokenizer = PreTokenizer::parse(member(tokenizer_json, "pre_tokenizer", "tokenizer.json"));
  impl->decoder = Decoder::parse(member(tokenizer_json, "decoder", "tokenizer.json"));
  const json::Value& post_processor = member(tokenizer_json, "post_processor", "tokenizer.json");
  impl->frame = parse_post_processor(post_processor);

  int32_t vocab_size = static_cast<int32_t>(impl->bpe.tokens().size());
  if (const json::Value* added = tokenizer_json.find("added_tokens"); added && !added->is_null()) {
    for (const json::Value& entry : added->as_array()) {
      const std::string where = "added_tokens";
      const auto id = optional_id(entry.find("id"));
      if (!id || *id < 0) fail("added_tokens: an entry has no valid id");
      impl->added.push_back({*id, string_member(entry, "content", where), bool_member(entry, "special", where, false),
                             bool_member(entry, "normalized", where, false), bool_member(entry, "lstrip", where, false),
                             bool_member(entry, "rstrip", where, false), bool_member(entry, "single_word", where, false)});
      vocab_size = std::max(vocab_size, *id + 1);
    }
  }
  impl->vocab_size = vocab_size;
  impl->added_text.assign(vocab_size, "");
  impl->special.assign(vocab_size, false);
  std::vector<const AddedToken*> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const AddedToken& token : impl->added) {
    impl->added_text[token.id] = token.content;
    impl->special[token.id] = token.special;
    if (token.normalized && !impl->normalizer.is_identity()) {
      normalized.push_back(&token);
      normalized_patterns.push_back(impl->normalizer.apply(token.content));
    } else {
      raw.push_back(&token);
      raw_patterns.push_back(token.content);
    }
  }
  impl->raw_matcher = AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
  impl->normalized_matcher = AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));

  // A file without a post-processor says with add_bos_token / add_eos_token what transformers adds.
  if (post_processor.is_null()) {
    auto token_id = [&](std::string_view flag, std::string_view name) -> std::optional<int32_t> {
      const json::Value* on = tokenizer.find(flag);
      const json::Value* text = tokenizer.find(name);
      if (!on || !on->is_bool() || !on->as_bool() || !text || !text->is_string()) return std::nullopt;
      for (const AddedToken& token : impl->added) {
        if (token.content == text->as_string()) return token.id;
      }
      return impl->bpe.id_of(text->as_string());
    };
    if (auto bos = token_id("add_bos_token", "bos_token")) impl->frame.prefix = {*bos};
    if (auto eos = token_id("add_eos_token", "eos_token")) impl->frame.suffix = {*eos};
  }

  auto id_of_token_named = [&](std::string_view key) -> std::optional<int32_t> {
    const json::Value* text = tokenizer.find(key);
    if (!text || !text->is_string()) return std::nullopt;
    for (const AddedToken& token : impl->added) {
      if (token.content == text->as_string()) return token.id;
    }
    return impl->bpe.id_of(text->as_string());
  };
  impl->bos = optional_id(config.find("bos_token_id"));
  if (!impl->bos) impl->bos = id_of_token_named("bos_token");
  if (const json::Value* eos = config.find("eos_token_id"); eos && eos->is_array()) {
    for (const json::Value& id : eos->as_array()) impl->eos.push_back(static_cast<int32_t>(id.as_int()));
  } else if (auto single = optional_id(eos)) {
    impl->eos.push_back(*single);
  }
  if (auto eos = id_of_token_named("eos_token"); eos && std::find(impl->eos.begin(), impl->eos.end(), *eos) == impl->eos.end()) {
    impl->eos.push_back(*eos);
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (!json::is_valid_utf8(text)) throw std::invalid_argument("[Tokenizer] encode: the text is not valid UTF-8");
  const Impl& impl = *impl_;
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl.frame.prefix;
  std::vector<Segment> raw_segments;
  impl.raw_matcher.split({std::string(text), true}, raw_segments);
  for (const Segment& raw : raw_segments) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    std::vector<Segment> segments;
    impl.normalized_matcher.split({impl.normalizer.apply(raw.piece.text), raw.piece.at_text_start}, segments);
    for (const Segment& segment : segments) {
      if (segment.id >= 0) ids.push_back(segment.id);
      else impl.tokenize_text(segment.piece, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), impl.frame.suffix.begin(), impl.frame.suffix.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->decoder.decode(impl_->token_strings(ids, skip_special_tokens), true);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos; }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && impl_->special[id];
}

std::string Tokenizer::token_text(int32_t id) const { return impl_->token_strings({id}, false)[0]; }

// ---- TextStream ------------------------------------------------------------------------------

TextStream::TextStream(Tokenizer tokenizer, bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_tokens_(skip_special_tokens) {}

std::string TextStream::push(int32_t id) {
  const Tokenizer::Impl& impl = *tokenizer_.impl_;
  impl.token_strings({id}, false);  // checks the id
  if (skip_special_tokens_ && impl.special[id]) return "";
  window_.push_back(id);
  return take_stable_text(false);
}

std::string TextStream::flush() {
  std::string rest = take_stable_text(true);
  window_.clear();
  window_at_start_ = true;
  emitted_in_window_ = 0;
  return rest;
}

// The text of window_ not yet returned, up to where later tokens can no longer change it; the
// window restarts after a token that leaves nothing pending.
std::string TextStream::take_stable_text(bool final) {
  const Tokenizer::Impl& impl = *tokenizer_.impl_;
  const std::vector<std::string> tokens = impl.token_strings(window_, false);
  const std::string text = impl.decoder.decode(tokens, window_at_start_);
  size_t stable = text.size();
  if (!final) {
    if (!tokens.empty() && impl.decoder.holds_back(tokens.back())) {
      stable = emitted_in_window_;  // a byte token may be the start of a character
    } else {
      // A U+FFFD at the end may be an incomplete character that the next byte completes.
      while (stable >= emitted_in_window_ + 3 && text.compare(stable - 3, 3, "\xEF\xBF\xBD") == 0) stable -= 3;
    }
  }
  std::string fresh = text.substr(emitted_in_window_, stable - emitted_in_window_);
  emitted_in_window_ = stable;
  if (stable == text.size() && !text.empty() && !final) {
    window_.clear();
    window_at_start_ = false;
    emitted_in_window_ = 0;
  }
  return fresh;
}

}  // namespace awq_edge
