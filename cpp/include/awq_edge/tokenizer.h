// tokenizer.h: text <-> token ids, from the Hugging Face tokenizer.json stored in a .awqe file.
//
// It reproduces what the `tokenizers` library does with that file, id for id: added (special)
// tokens matched in the raw text, then normalizer, pre-tokenizer, BPE model and post-processor
// for encode; the decoder for decode. Supported pieces (anything else is an error naming it):
//   model           BPE (merges as "a b" strings or pairs, byte_fallback, ignore_merges, unk)
//   normalizer      NFC, Prepend, Replace (string pattern), Sequence
//   pre_tokenizer   ByteLevel, Split (the GPT-2, LLaMA-3 and Qwen2 patterns), Metaspace, Digits,
//                   Sequence
//   decoder         ByteLevel, Metaspace, Replace (string pattern), ByteFallback, Fuse,
//                   Strip (leading only), Sequence
//   post_processor  TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "awq_edge/json.h"

namespace awq_edge {

class Tokenizer {
 public:
  // tokenizer: the metadata's "tokenizer" object (tokenizer_json, bos_token, add_bos_token, ...);
  // config: the metadata's "config" object (bos_token_id, eos_token_id).
  // Throws std::invalid_argument naming the unsupported or malformed part.
  static Tokenizer from_metadata(const json::Value& tokenizer, const json::Value& config);

  // HF `encode(text, add_special_tokens=...)`: BOS/EOS as the post-processor says (or, when the
  // file has none, as add_bos_token / add_eos_token say). The text must be valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // HF `decode(ids, skip_special_tokens=...)`. Throws std::out_of_range for an unknown id.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // One past the largest token id, added tokens included.
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  // The config's eos_token_id(s), then the tokenizer's eos_token if it is another one.
  std::vector<int32_t> eos_ids() const;
  bool is_special(int32_t id) const;
  // The token as the vocabulary spells it ("Ġhello", "▁the", "<0x0A>", "<|im_end|>").
  std::string token_text(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable, so copies share it

  friend class TextStream;
};

// Streaming detokenizer for generation. push(id) returns the text that the new token completes:
// whole UTF-8 characters only, and never text that a later token could still change (a byte
// token that may begin a character, the space SentencePiece strips at the start). flush() returns
// what is left. The concatenation of every push and the flush equals decode(all ids).
class TextStream {
 public:
  explicit TextStream(Tokenizer tokenizer, bool skip_special_tokens = false);
  std::string push(int32_t id);
  std::string flush();

 private:
  std::string take_stable_text(bool final);

  Tokenizer tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> window_;   // the ids since the last point where decoding can restart
  bool window_at_start_ = true;   // window_ begins the sequence (first-token rules apply)
  size_t emitted_in_window_ = 0;  // bytes of decode(window_) already returned
};

}  // namespace awq_edge
