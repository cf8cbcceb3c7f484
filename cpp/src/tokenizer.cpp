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
      // Such a token matches its normalized form, and `tokenizers` decodes it to that form too.
      impl->added_text[token.id] = impl->normalizer.apply(token.content);
      normalized.push_back(&token);
      normalized_patterns.push_back(impl->added_text[token.id]);
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

}  // namespace awq_edge
