// module.cpp: the extension module awq_edge._awq_edge. The Python package re-exports from it
// (python/awq_edge/model_file.py); each bound concept lives in the binding file of its name.
#include <nanobind/nanobind.h>

#include "bindings.h"

NB_MODULE(_awq_edge, m) {
  m.doc() = "awq_edge's C++ engine: the .awqe model file reader, tokenizer, sampler, decoder and generation loop.";
  awq_edge::bindings::bind_crc32(m);
  awq_edge::bindings::bind_json(m);
  awq_edge::bindings::bind_model_file(m);
  awq_edge::bindings::bind_generator(m);
  awq_edge::bindings::bind_cpu_kernels(m);
  awq_edge::bindings::bind_tokenizer(m);
  awq_edge::bindings::bind_sampler(m);
  awq_edge::bindings::bind_backends(m);
}
