// tokenizer_post_processor.cpp: the special tokens encode puts around a single sequence
// (add_special_tokens=true): TemplateProcessing's "single" template, RobertaProcessing's and
// BertProcessing's cls ... sep, nothing for ByteLevel; Sequence applies them in order.
#include "tokenizer_stages.h"

namespace awq_edge::tokenizer {

namespace {

std::vector<int32_t> ids_of_template_token(const json::Value& special_tokens, const std::string& name) {
  const json::Value* entry = special_tokens.find(name);
  if (!entry) fail("post_processor TemplateProcessing: special token '" + name + "' is not in special_tokens");
  std::vector<int32_t> ids;
  for (const json::Value& id : member(*entry, "ids", "post_processor.special_tokens").as_array()) {
    ids.push_back(static_cast<int32_t>(id.as_int()));
  }
  return ids;
}

// ["</s>", 2] -> 2
int32_t id_of_pair(const json::Value& processor, std::string_view key) {
  const json::Value::Array& pair = member(processor, key, "post_processor").as_array();
  if (pair.size() != 2 || !pair[1].is_int()) fail("post_processor: " + std::string(key) + " is not [token, id]");
  return static_cast<int32_t>(pair[1].as_int());
}

void add(const json::Value& processor, SpecialTokenFrame& frame) {
  const std::string type = type_of(processor, "post_processor");
  SpecialTokenFrame inner;
  if (type == "Sequence") {
    for (const json::Value& step : member(processor, "processors", "post_processor").as_array()) add(step, frame);
    return;
  }
  if (type == "ByteLevel") return;  // it only adjusts offsets
  if (type == "TemplateProcessing") {
    const json::Value& special_tokens = member(processor, "special_tokens", "post_processor");
    bool seen_sequence = false;
    for (const json::Value& item : member(processor, "single", "post_processor").as_array()) {
      if (const json::Value* special = item.find("SpecialToken")) {
        const std::vector<int32_t> ids = ids_of_template_token(special_tokens, string_member(*special, "id", "post_processor.single"));
        auto& side = seen_sequence ? inner.suffix : inner.prefix;
        side.insert(side.end(), ids.begin(), ids.end());
      } else if (const json::Value* sequence = item.find("Sequence")) {
        if (seen_sequence || string_member(*sequence, "id", "post_processor.single") != "A") {
          fail("post_processor TemplateProcessing: the single template must hold sequence A exactly once");
        }
        seen_sequence = true;
      } else {
        fail("post_processor TemplateProcessing: a single template item is neither SpecialToken nor Sequence");
      }
    }
    if (!seen_sequence) fail("post_processor TemplateProcessing: the single template has no sequence A");
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    inner.prefix = {id_of_pair(processor, "cls")};
    inner.suffix = {id_of_pair(processor, "sep")};
  } else {
    fail("post_processor type '" + type +
         "' is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
  }
  frame.prefix.insert(frame.prefix.begin(), inner.prefix.begin(), inner.prefix.end());
  frame.suffix.insert(frame.suffix.end(), inner.suffix.begin(), inner.suffix.end());
}

}  // namespace

SpecialTokenFrame parse_post_processor(const json::Value& post_processor) {
  SpecialTokenFrame frame;
  if (!post_processor.is_null()) add(post_processor, frame);
  return frame;
}

}  // namespace awq_edge::tokenizer
