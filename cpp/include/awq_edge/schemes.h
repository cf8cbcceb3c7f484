// schemes.h: how each weight matrix of a model is stored (docs/FORMAT.md section 5) and the
// exact tensor set a model file holds (section 6), derived from the file's metadata.
// Mirrors python/awq_edge/awqe/schemes.py.
//
// A module is a weight matrix W of N output rows and K input columns (y = W x):
//   f16        M.weight  F16 (N, K)
//   q8_row     M.qweight I8  (N, K),        M.scales F16 (N,)
//   q{b}_g{g}  M.qweight U32 (N, K*b/32),   M.scales F16 (N, K/g),
//              M.zeros   U32 (N, ceil(K/g*b/32))       b in {3, 4}, g in {32, 64, 128}
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "awq_edge/json.h"
#include "awq_edge/tensor.h"

namespace awq_edge {

struct Scheme {
  enum class Kind { F16, Q8Row, Grouped };
  Kind kind = Kind::F16;
  int bits = 16;       // 16 (f16), 8 (q8_row), 3 or 4 (grouped)
  int group_size = 0;  // grouped only: 32, 64 or 128

  // "f16", "q8_row", "q3_g32" ... "q4_g128"; nothing for any other text.
  static std::optional<Scheme> parse(std::string_view text);
  std::string name() const;
};

// One weight matrix: "embed", "layers.3.mlp.up", "lm_head" ...
struct Module {
  std::string name;
  Scheme scheme;
  uint64_t rows = 0;  // N, output features
  uint64_t cols = 0;  // K, input features
};

struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;
};

// Every weight matrix of the model the metadata describes, in file-independent order
// (embed, then each layer's attn.q/k/v/o and mlp.gate/up/down, then lm_head unless tied),
// with quantization.overrides applied. Throws std::invalid_argument naming the offending
// metadata field (unknown scheme, override of a module the model lacks, inconsistent tying,
// K not a multiple of the group size), or json::TypeError for a field of the wrong type.
std::vector<Module> model_modules(const json::Value& metadata);

// The tensors of one module stored under its scheme.
std::vector<TensorSpec> module_tensors(const Module& module);

// The complete tensor set (section 6): every module's tensors, the norms, and the biases the
// config's attention_bias / attention_out_bias / mlp_bias flags ask for.
std::vector<TensorSpec> expected_tensors(const json::Value& metadata);

}  // namespace awq_edge
