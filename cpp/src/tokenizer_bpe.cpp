// tokenizer_bpe.cpp: the BPE model. A word starts as one symbol per character (or per byte, with
// byte_fallback, for characters outside the vocabulary); then the adjacent pair with the lowest
// merge rank is merged, leftmost first, until no pair has a merge. A heap of candidate pairs
// makes that O(n log n) in the word length; stale candidates are skipped when popped.
#include <algorithm>
#include <cstdio>
#include <queue>

#include "tokenizer_stages.h"
#include "unicode.h"

namespace awq_edge::tokenizer {

namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// An optional string field that this implementation supports only when empty or absent.
void require_absent(const json::Value& model, std::string_view key) {
  const json::Value* value = model.find(key);
  if (value && !value->is_null() && !(value->is_string() && value->as_string().empty())) {
    fail("model BPE: " + std::string(key) + " is not supported");
  }
}

}  // namespace

Bpe::Bpe(const json::Value& model) {
  const std::string where = "model";
  const std::string type = type_of(model, where);
  if (type != "BPE") fail("model type '" + type + "' is not supported (supported: BPE)");
  require_absent(model, "continuing_subword_prefix");
  require_absent(model, "end_of_word_suffix");
  if (const json::Value* dropout = model.find("dropout"); dropout && !dropout->is_null()) {
    fail("model BPE: dropout is not supported");
  }
  fuse_unk_ = bool_member(model, "fuse_unk", where, false);
  byte_fallback_ = bool_member(model, "byte_fallback", where, false);
  ignore_merges_ = bool_member(model, "ignore_merges", where, false);

  const json::Value::Object& vocab = member(model, "vocab", where).as_object();
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (!id.is_int() || id.as_int() < 0 || id.as_int() > INT32_MAX) fail("model.vocab['" + token + "']: bad id");
    max_id = std::max(max_id, id.as_int());
  }
  tokens_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : vocab) tokens_[static_cast<size_t>(id.as_int())] = token;
  token_ids_.reserve(vocab.size());
  for (const auto& [token, id] : vocab) token_ids_.emplace(tokens_[static_cast<size_t>(id.as_int())], id.as_int());

  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    const auto found = id_of(name);
    byte_ids_[byte] = found ? *found : -1;
  }

  const json::Value::Array& merges = member(model, "merges", where).as_array();
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    std::string left, right;
    if (merges[rank].is_string()) {  // "left right"
      const std::string& text = merges[rank].as_string();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        fail("model.merges[" + std::to_string(rank) + "] '" + text + "' is not two tokens separated by a space");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else {  // ["left", "right"]
      const json::Value::Array& pair = merges[rank].as_array();
      if (pair.size() != 2) fail("model.merges[" + std::to_string(rank) + "] is not a pair");
      left = pair[0].as_string();
      right = pair[1].as_string();
    }
    const auto left_id = id_of(left), right_id = id_of(right), merged_id = id_of(left + right);
    if (!left_id || !right_id || !merged_id) {
      fail("model.merges[" + std::to_string(rank) + "] ('" + left + "', '" + right + "') uses a token outside the vocabulary");
    }
    merges_.emplace(pair_key(*left_id, *right_id), std::make_pair(static_cast<int32_t>(rank), *merged_id));
  }

  if (const json::Value* unk = model.find("unk_token"); unk && unk->is_string()) {
    unk_id_ = id_of(unk->as_string());
    if (!unk_id_) fail("model BPE: unk_token '" + unk->as_string() + "' is not in the vocabulary");
  }
}

std::optional<int32_t> Bpe::id_of(std::string_view token) const {
  const auto found = token_ids_.find(token);
  if (found == token_ids_.end()) return std::nullopt;
  return found->second;
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (const auto id = id_of(word)) {
      out.push_back(*id);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t previous, next;  // indices in `symbols`, -1 at the ends
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto push = [&](int32_t id) {
    symbols.push_back({id, static_cast<int32_t>(symbols.size()) - 1, -1});
  };
  bool last_was_unk = false;
  for (size_t at = 0; at < word.size();) {
    const size_t length = unicode::utf8_sequence_length(static_cast<uint8_t>(word[at]));
    const std::string_view character = word.substr(at, length);
    at += length;
    if (const auto id = id_of(character)) {
      push(*id);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_ && std::all_of(character.begin(), character.end(),
                                      [&](char byte) { return byte_ids_[static_cast<uint8_t>(byte)] >= 0; })) {
      for (char byte : character) push(byte_ids_[static_cast<uint8_t>(byte)]);
      last_was_unk = false;
      continue;
    }
    if (!unk_id_) continue;  // `tokenizers` drops characters it cannot represent
    if (!(fuse_unk_ && last_was_unk)) push(*unk_id_);
    last_was_unk = true;
  }
  for (size_t i = 0; i + 1 < symbols.size(); ++i) symbols[i].next = static_cast<int32_t>(i + 1);

  struct Candidate {
    int32_t rank, left;      // merge rank; index of the left symbol
    int32_t left_id, right_id, merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const Symbol& a = symbols[left];
    const Symbol& b = symbols[a.next];
    const auto merge = merges_.find(pair_key(a.id, b.id));
    if (merge != merges_.end()) heap.push({merge->second.first, left, a.id, b.id, merge->second.second});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<int32_t>(i));

  std::vector<bool> removed(symbols.size(), false);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = symbols[top.left];
    if (removed[top.left] || left.id != top.left_id || left.next < 0 || symbols[left.next].id != top.right_id) {
      continue;  // stale: one side has merged since
    }
    const int32_t right_index = left.next;
    removed[right_index] = true;
    left.id = top.merged_id;
    left.next = symbols[right_index].next;
    if (left.next >= 0) symbols[left.next].previous = top.left;
    consider(left.previous);
    consider(top.left);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace awq_edge::tokenizer
