// tokenizer_text_stream.cpp: TextStream, decoding a growing sequence piece by piece.
//
// It decodes a window of the latest ids and returns what is new. The window restarts after a
// token once everything decoded so far is final: then decoding the rest on its own (without the
// rules for the start of the text) gives the same text as decoding the whole sequence.
#include "tokenizer_stages.h"

namespace awq_edge {

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
