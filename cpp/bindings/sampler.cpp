// sampler.cpp (bindings): SamplingParams and Sampler for Python. Invalid parameters, NaN logits
// and bad context ids raise ValueError (std::invalid_argument) with the engine's message.
//
// sample() overwrites the logits array, as the engine does with a step's fresh logits; pass a
// copy to keep them. A context is a 1-D int32 numpy array (used in place) or any sequence of ints.
#include "awq_edge/sampler.h"

#include <cstdio>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace awq_edge::bindings {

namespace {

using Logits = nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using ConstLogits = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using ContextArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

void check_size(const Sampler& sampler, size_t size) {
  if (size != static_cast<size_t>(sampler.vocab_size())) {
    throw std::invalid_argument("[Sampler] logits has " + std::to_string(size) + " entries, expected vocab_size " +
                                std::to_string(sampler.vocab_size()));
  }
}

nb::ndarray<nb::numpy, float, nb::ndim<1>> to_numpy(std::vector<float> values) {
  auto* owned = new std::vector<float>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  return nb::ndarray<nb::numpy, float, nb::ndim<1>>(owned->data(), {owned->size()}, owner);
}

std::string repr(const SamplingParams& p) {
  char text[160];
  std::snprintf(text, sizeof text,
                "SamplingParams(temperature=%g, top_k=%d, top_p=%g, min_p=%g, repetition_penalty=%g, seed=%llu)",
                p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty,
                static_cast<unsigned long long>(p.seed));
  return text;
}

}  // namespace

void bind_sampler(nb::module_& m) {
  nb::class_<SamplingParams>(m, "SamplingParams",
                             "SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,\n"
                             "seed=0x5eed): transformers' sampling settings; temperature 0 is greedy.\n"
                             "Raises ValueError for a value out of range.")
      .def(
          "__init__",
          [](SamplingParams* self, float temperature, int32_t top_k, float top_p, float min_p,
             float repetition_penalty, uint64_t seed) {
            SamplingParams params;
            params.temperature = temperature;
            params.top_k = top_k;
            params.top_p = top_p;
            params.min_p = min_p;
            params.repetition_penalty = repetition_penalty;
            params.seed = seed;
            params.validate();
            new (self) SamplingParams(params);
          },
          nb::kw_only(), "temperature"_a = 1.0f, "top_k"_a = 0, "top_p"_a = 1.0f, "min_p"_a = 0.0f,
          "repetition_penalty"_a = 1.0f, "seed"_a = SamplingParams{}.seed)
      .def_rw("temperature", &SamplingParams::temperature)
      .def_rw("top_k", &SamplingParams::top_k)
      .def_rw("top_p", &SamplingParams::top_p)
      .def_rw("min_p", &SamplingParams::min_p)
      .def_rw("repetition_penalty", &SamplingParams::repetition_penalty)
      .def_rw("seed", &SamplingParams::seed)
      .def("validate", &SamplingParams::validate, "Raise ValueError if a field is out of range.")
      .def("__repr__", &repr);

  nb::class_<Sampler>(m, "Sampler",
                      "Sampler(params, vocab_size): draws tokens as transformers' sampling would (see\n"
                      "cpp/include/awq_edge/sampler.h), from its own seeded random stream.")
      .def(nb::init<const SamplingParams&, int32_t>(), "params"_a, "vocab_size"_a)
      .def(
          "sample",
          [](Sampler& sampler, Logits logits, ContextArray context) {
            check_size(sampler, logits.shape(0));
            return sampler.sample(logits.data(), context.data(), context.shape(0));
          },
          "logits"_a, "context"_a,
          "Draw the next token id. logits: (vocab_size,) float32, overwritten; context: int32 ids so far.")
      .def(
          "sample",
          [](Sampler& sampler, Logits logits, const std::vector<int32_t>& context) {
            check_size(sampler, logits.shape(0));
            return sampler.sample(logits.data(), context.data(), context.size());
          },
          "logits"_a, "context"_a = std::vector<int32_t>{})
      .def(
          "probabilities",
          [](const Sampler& sampler, ConstLogits logits, ContextArray context) {
            check_size(sampler, logits.shape(0));
            return to_numpy(sampler.probabilities(logits.data(), context.data(), context.shape(0)));
          },
          "logits"_a, "context"_a,
          "(vocab_size,) float32: the distribution sample() would draw from (one-hot when greedy).")
      .def(
          "probabilities",
          [](const Sampler& sampler, ConstLogits logits, const std::vector<int32_t>& context) {
            check_size(sampler, logits.shape(0));
            return to_numpy(sampler.probabilities(logits.data(), context.data(), context.size()));
          },
          "logits"_a, "context"_a = std::vector<int32_t>{})
      .def("reset", &Sampler::reset, "seed"_a, "Restart the random stream as if constructed with this seed.")
      .def_prop_ro("params", &Sampler::params)
      .def_prop_ro("vocab_size", &Sampler::vocab_size);
}

}  // namespace awq_edge::bindings
