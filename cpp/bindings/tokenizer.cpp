// tokenizer.cpp (bindings): Tokenizer and TextStream, so tests can hold them to Hugging Face's.
// Errors in tokenizer.json raise ValueError; an unknown token id raises IndexError.
#include "awq_edge/tokenizer.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {

void bind_tokenizer(nb::module_& m) {
  nb::class_<Tokenizer>(m, "Tokenizer",
                        "Text <-> token ids from the tokenizer.json in .awqe metadata, like Hugging Face's.")
      .def_static(
          "from_json",
          [](std::string_view tokenizer_section, std::string_view config) {
            return Tokenizer::from_metadata(json::Value::parse(tokenizer_section), json::Value::parse(config));
          },
          "tokenizer_section_json"_a, "config_json"_a,
          "Build from the metadata's \"tokenizer\" and \"config\" objects, each as JSON text.")
      .def("encode", &Tokenizer::encode, "text"_a, "add_special_tokens"_a = true)
      .def("decode", &Tokenizer::decode, "ids"_a, "skip_special_tokens"_a = false)
      .def_prop_ro("vocab_size", &Tokenizer::vocab_size)
      .def_prop_ro("bos_id", &Tokenizer::bos_id)
      .def_prop_ro("eos_ids", &Tokenizer::eos_ids)
      .def("is_special", &Tokenizer::is_special, "id"_a)
      .def("token_text", &Tokenizer::token_text, "id"_a);

  nb::class_<TextStream>(m, "TextStream", "Streaming detokenizer: push(id) returns the text completed so far.")
      .def(nb::init<Tokenizer, bool>(), "tokenizer"_a, "skip_special_tokens"_a = false)
      .def("push", &TextStream::push, "id"_a)
      .def("flush", &TextStream::flush);
}

}  // namespace awq_edge::bindings
