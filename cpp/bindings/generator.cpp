// generator.cpp (bindings): the engine's Generator for Python (python/awq_edge/generator.py wraps
// it with text prompts, chat templates and streaming).
//
// Every call that runs the model releases the GIL; between forward passes it takes the GIL back
// for a moment to let Python handle signals, so Ctrl-C raises KeyboardInterrupt within one step.
#include "awq_edge/generator.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {
namespace {

// True (and a Python exception set) when a signal handler raised, e.g. KeyboardInterrupt.
bool python_signal_pending() {
  nb::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

// Runs f without the GIL; an Interrupted from the stop check becomes the pending Python error.
template <typename F>
auto without_gil(F&& f) {
  try {
    nb::gil_scoped_release release;
    return f();
  } catch (const Interrupted&) {
    throw nb::python_error();  // the KeyboardInterrupt that PyErr_CheckSignals set
  }
}

nb::dict stats_dict(const GenerationStats& s) {
  nb::dict d;
  d["prompt_tokens"] = s.prompt_tokens;
  d["cached_tokens"] = s.cached_tokens;
  d["generated_tokens"] = s.generated_tokens;
  d["prefill_seconds"] = s.prefill_seconds;
  d["decode_seconds"] = s.decode_seconds;
  return d;
}

}  // namespace

void bind_generator(nb::module_& m) {
  nb::class_<GenerationOptions>(m, "GenerationOptions", "The settings of one generate() call.")
      .def(
          "__init__",
          [](GenerationOptions* self, int64_t max_new_tokens, float temperature, int32_t top_k, float top_p,
             float min_p, float repetition_penalty, uint64_t seed, std::vector<int32_t> stop_token_ids,
             std::vector<std::string> stop_strings, bool ignore_eos) {
            GenerationOptions* options = new (self) GenerationOptions();
            options->max_new_tokens = max_new_tokens;
            options->sampling.temperature = temperature;
            options->sampling.top_k = top_k;
            options->sampling.top_p = top_p;
            options->sampling.min_p = min_p;
            options->sampling.repetition_penalty = repetition_penalty;
            options->sampling.seed = seed;
            options->stop_token_ids = std::move(stop_token_ids);
            options->stop_strings = std::move(stop_strings);
            options->ignore_eos = ignore_eos;
          },
          "max_new_tokens"_a, "temperature"_a, "top_k"_a, "top_p"_a, "min_p"_a, "repetition_penalty"_a,
          "seed"_a, "stop_token_ids"_a, "stop_strings"_a, "ignore_eos"_a);

  nb::class_<GenerationResult>(m, "GenerationResult",
                               "What one generate() call produced.")
      .def_ro("tokens", &GenerationResult::tokens, "generated token ids")
      .def_ro("text", &GenerationResult::text, "their text, cut before a stop string")
      .def_prop_ro("finish_reason",
                   [](const GenerationResult& r) { return std::string(finish_reason_name(r.finish_reason)); },
                   "'stop', 'length' or 'context' ('none' while running)")
      .def_prop_ro("stats", [](const GenerationResult& r) { return stats_dict(r.stats); },
                   "token counts and seconds of prefill and decode");

  nb::class_<Generator>(m, "Generator", "The engine: a model file on a backend, with its tokenizer.")
      .def(
          "__init__",
          [](Generator* self, const std::string& path, const std::string& backend, int threads,
             const std::string& kernels, int64_t max_context, int64_t prefill_chunk,
             bool verify_checksums) {
            GeneratorOptions options;
            options.backend = backend;
            options.backend_options.threads = threads;
            options.backend_options.kernels = kernels;
            options.model_options.max_context = max_context;
            options.model_options.prefill_chunk = prefill_chunk;
            options.verify_checksums = verify_checksums;
            nb::gil_scoped_release release;
            new (self) Generator(path, options);
          },
          "path"_a, "backend"_a = "auto", "threads"_a = 0, "kernels"_a = "auto",
          "max_context"_a = 0, "prefill_chunk"_a = 128, "verify_checksums"_a = true)
      .def_prop_ro("metadata_json", [](const Generator& g) { return g.file().metadata_json(); })
      .def_prop_ro("path", [](const Generator& g) { return g.file().path(); })
      .def_prop_ro("backend", [](Generator& g) { return g.backend().description(); })
      .def_prop_ro("vocab_size", [](const Generator& g) { return g.config().vocab_size; })
      .def_prop_ro("max_context", [](Generator& g) { return g.model().max_context(); })
      .def_prop_ro("position", [](Generator& g) { return g.model().position(); },
                   "positions of the KV cache in use")
      .def_prop_ro("load_seconds", &Generator::load_seconds)
      .def_prop_ro("eos_token_ids", [](const Generator& g) { return g.config().eos_token_ids; })
      .def("tokenize", &Generator::tokenize, "text"_a, "add_special_tokens"_a = true)
      .def("detokenize", &Generator::detokenize, "ids"_a, "skip_special_tokens"_a = false)
      .def(
          "generate",
          [](Generator& g, const std::vector<int32_t>& prompt, const GenerationOptions& options) {
            return without_gil([&] { return g.generate(prompt, options, nullptr, python_signal_pending); });
          },
          "prompt"_a, "options"_a)
      .def(
          "start",
          [](Generator& g, const std::vector<int32_t>& prompt, const GenerationOptions& options) {
            without_gil([&] { g.start(prompt, options, python_signal_pending); });
          },
          "prompt"_a, "options"_a)
      .def(
          "next", [](Generator& g) { return without_gil([&] { return g.next(python_signal_pending); }); },
          "The next piece of text (maybe empty), or None when the generation has finished.")
      .def_prop_ro("result", &Generator::result, nb::rv_policy::copy)
      .def(
          "forward",
          [](Generator& g, const std::vector<int32_t>& tokens, bool all_logits) {
            auto* logits = new std::vector<float>(
                without_gil([&] { return g.forward(tokens, all_logits); }));
            nb::capsule owner(logits, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
            const size_t vocab = static_cast<size_t>(g.config().vocab_size);
            const size_t rows = logits->size() / vocab;
            return nb::ndarray<nb::numpy, float, nb::ndim<2>>(logits->data(), {rows, vocab}, owner);
          },
          "tokens"_a, "all_logits"_a = false,
          "Runs tokens after the cached ones; logits (n, V) for all of them or (1, V) for the last.")
      .def("reset", &Generator::reset, "Forgets the KV cache.");
}

}  // namespace awq_edge::bindings
