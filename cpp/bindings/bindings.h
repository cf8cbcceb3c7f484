// bindings.h: one bind_* function per bound C++ concept; module.cpp calls them all.
#pragma once

#include <nanobind/nanobind.h>

namespace awq_edge::bindings {

void bind_crc32(nanobind::module_& m);       // crc32.cpp
void bind_json(nanobind::module_& m);        // json.cpp
void bind_model_file(nanobind::module_& m);  // model_file.cpp
void bind_generator(nanobind::module_& m);   // generator.cpp
void bind_cpu_kernels(nanobind::module_& m);  // cpu_kernels.cpp
void bind_tokenizer(nanobind::module_& m);   // tokenizer.cpp
void bind_sampler(nanobind::module_& m);     // sampler.cpp
void bind_backends(nanobind::module_& m);    // backends.cpp
void bind_backend_operations(nanobind::module_& backends);  // backend_operations.cpp (into backends)

}  // namespace awq_edge::bindings
