// tokenizer_stages.h: the stages of the tokenizer pipeline, in the order encode runs them, each
// built from its part of tokenizer.json and implemented in the file named beside it.
//
//   text -> AddedTokens (raw) -> Normalizer -> AddedTokens (normalized) -> PreTokenizer -> Bpe
//        -> PostProcessor -> ids;            ids -> Decoder -> text
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "awq_edge/json.h"
#include "awq_edge/tokenizer.h"

namespace awq_edge::tokenizer {

// Throws std::invalid_argument("[Tokenizer] tokenizer.json: " + message).
[[noreturn]] void fail(const std::string& message);
// Readers of tokenizer.json fields that fail with the field's path in the message.
const json::Value& member(const json::Value& object, std::string_view key, std::string_view where);
std::string string_member(const json::Value& object, std::string_view key, std::string_view where);
bool bool_member(const json::Value& object, std::string_view key, std::string_view where, bool fallback);
std::string type_of(const json::Value& object, std::string_view where);

// A stretch of text on its way to the model. at_text_start: it begins at byte 0 of the input
// (Metaspace's prepend_scheme "first" prepends only there).
struct Piece {
  std::string text;
  bool at_text_start;
};

// ---- added_tokens (tokenizer_added_tokens.cpp) ----------------------------------------------

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, normalized, lstrip, rstrip, single_word;
};

// Either text still to tokenize (id < 0) or one added token.
struct Segment {
  Piece piece;
  int32_t id = -1;
};

// Finds added tokens the way `tokenizers` does: leftmost match, the longest at that position.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // patterns[i] is what tokens[i] matches (its content, normalized for normalized tokens).
  AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns);
  void split(const Piece& piece, std::vector<Segment>& out) const;

 private:
  std::vector<const AddedToken*> tokens_;
  std::vector<std::string> patterns_;
  std::vector<std::vector<size_t>> by_first_byte_;  // [256] -> indices, longest pattern first
};

// ---- normalizer (tokenizer_normalizer.cpp) ---------------------------------------------------

class Normalizer {
 public:
  static Normalizer parse(const json::Value& normalizer);  // null: the identity
  std::string apply(std::string text) const;
  bool is_identity() const { return steps_.empty(); }

 private:
  struct Step {
    enum class Kind { Nfc, Prepend, Replace } kind;
    std::string text, replacement;  // Prepend: text; Replace: text -> replacement
  };
  void add(const json::Value& normalizer);
  std::vector<Step> steps_;
};

// ---- pre-tokenizer (tokenizer_pretokenizer.cpp, tokenizer_split_patterns.cpp) -----------------

// The regular expressions of Split / ByteLevel that are recognised, by their exact text.
enum class SplitPattern { Gpt2, Llama3, Qwen2 };
std::optional<SplitPattern> known_split_pattern(std::string_view regex);
// The pieces the pattern's matches and the gaps between them cut `text` into (behavior
// "Isolated"), as byte lengths in order.
std::vector<size_t> split_lengths(SplitPattern pattern, std::string_view text);

class PreTokenizer {
 public:
  static PreTokenizer parse(const json::Value& pre_tokenizer);  // null: no splitting
  void apply(std::vector<Piece>& pieces) const;

 private:
  struct Step {
    enum class Kind { ByteLevel, Split, Metaspace, Digits } kind;
    bool add_prefix_space = false;                     // ByteLevel
    std::optional<SplitPattern> pattern;               // ByteLevel (use_regex) and Split
    std::string replacement;                           // Metaspace
    enum class Prepend { Always, First, Never } prepend = Prepend::Always;  // Metaspace
    bool split = true;                                 // Metaspace
    bool individual_digits = false;                    // Digits
  };
  void add(const json::Value& pre_tokenizer);
  std::vector<Step> steps_;
};

// The GPT-2 byte <-> character table of ByteLevel: printable bytes stand for themselves, the
// others for U+0100 onwards.
const std::string& byte_level_char(uint8_t byte);   // as UTF-8
std::optional<uint8_t> byte_level_byte(char32_t cp);

// ---- model (tokenizer_bpe.cpp) ---------------------------------------------------------------

class Bpe {
 public:
  explicit Bpe(const json::Value& model);
  Bpe(const Bpe&) = delete;  // token_ids_ points into tokens_
  Bpe& operator=(const Bpe&) = delete;

  void tokenize(std::string_view word, std::vector<int32_t>& out) const;
  std::optional<int32_t> id_of(std::string_view token) const;
  const std::vector<std::string>& tokens() const { return tokens_; }  // by id; "" for holes

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string_view, int32_t> token_ids_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left << 32 | right) -> (rank, merged id)
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  int32_t byte_ids_[256];  // <0xHH> tokens for byte_fallback, -1 if absent
};

// ---- post-processor (tokenizer_post_processor.cpp) -------------------------------------------

// What encode adds around a single sequence when add_special_tokens is true.
struct SpecialTokenFrame {
  std::vector<int32_t> prefix, suffix;
};
SpecialTokenFrame parse_post_processor(const json::Value& post_processor);

// ---- decoder (tokenizer_decoder.cpp) ---------------------------------------------------------

class Decoder {
 public:
  static Decoder parse(const json::Value& decoder);  // null: tokens joined by spaces
  // at_sequence_start: tokens[0] is the first token of the sequence, so the rules for the start
  // of the text (Metaspace's and Strip's) apply to it; TextStream decodes later windows without.
  std::string decode(std::vector<std::string> tokens, bool at_sequence_start) const;
  // Whether decoding may still change the text of `token` once more tokens follow it.
  bool holds_back(std::string_view token) const;

 private:
  struct Step {
    enum class Kind { ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip } kind;
    std::string text, replacement;  // Replace: text -> replacement; Metaspace: text = "▁"
    bool strips_first = false;      // Metaspace: prepend_scheme is not "never"
    size_t strip_start = 0;         // Strip: how many leading `text` characters to remove
  };
  void add(const json::Value& decoder);
  std::vector<Step> steps_;
  bool has_decoder_ = false;
};

}  // namespace awq_edge::tokenizer

namespace awq_edge {

// ---- the whole pipeline (tokenizer.cpp; TextStream in tokenizer_text_stream.cpp) ------------

struct Tokenizer::Impl {
  explicit Impl(const json::Value& tokenizer_json) : bpe(tokenizer::member(tokenizer_json, "model", "tokenizer.json")) {}

  tokenizer::Bpe bpe;
  std::vector<tokenizer::AddedToken> added;
  tokenizer::AddedTokenMatcher raw_matcher, normalized_matcher;  // tokens with normalized false / true
  tokenizer::Normalizer normalizer;
  tokenizer::PreTokenizer pre_tokenizer;
  tokenizer::SpecialTokenFrame frame;
  tokenizer::Decoder decoder;
  std::vector<std::string> added_text;  // by id; "" where the model's token applies
  std::vector<bool> special;            // by id
  int32_t vocab_size = 0;
  std::optional<int32_t> bos;
  std::vector<int32_t> eos;

  void tokenize_text(const tokenizer::Piece& piece, std::vector<int32_t>& ids) const {
    std::vector<tokenizer::Piece> words{piece};
    pre_tokenizer.apply(words);
    for (const tokenizer::Piece& word : words) bpe.tokenize(word.text, ids);
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

}  // namespace awq_edge
