// backend.cpp: what every backend shares: activation views and the composite operations'
// default implementations (a backend with fused kernels overrides them).
#include "awq_edge/backend.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace awq_edge {

Activation Activation::rows_view(int64_t first, int64_t count) const {
  if (first < 0 || count < 0 || first + count > rows) {
    throw std::out_of_range("[Activation] rows [" + std::to_string(first) + ", " +
                            std::to_string(first + count) + ") of a matrix of " +
                            std::to_string(rows) + " rows");
  }
  Activation view = *this;
  view.rows = count;
  view.data = static_cast<char*>(data) + first * row_stride * element_size;
  return view;
}

void rope_cos_sin(const std::vector<float>& inv_freq, int64_t positions, std::vector<float>& cos,
                  std::vector<float>& sin) {
  const size_t half = inv_freq.size();
  cos.resize(static_cast<size_t>(positions) * half);
  sin.resize(cos.size());
  for (int64_t p = 0; p < positions; ++p) {
    for (size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos[static_cast<size_t>(p) * half + i] = std::cos(angle);
      sin[static_cast<size_t>(p) * half + i] = std::sin(angle);
    }
  }
}

bool Backend::begin_step(const int32_t* /*tokens*/, int64_t /*n*/, int64_t /*first_position*/,
                         int64_t /*logit_rows*/) {
  return false;
}

void Backend::end_step() {}

void Backend::uploads_finished(const MappedFile& /*mapping*/) {}

std::unique_ptr<LinearWeights> Backend::upload_embedding(const Module& module, const std::vector<TensorView>& tensors) {
  return upload_linear(module, tensors);
}

void Backend::add_rms_norm(Activation& x, const Activation& delta, const Activation& weight,
                           float eps, Activation& out) {
  add(x, delta);
  rms_norm(x, weight, eps, out);
}

void Backend::attention_projections(const LinearWeights& q_w, const LinearWeights& k_w, const LinearWeights& v_w,
                                    const Activation* q_bias, const Activation* k_bias, const Activation* v_bias,
                                    const Activation& x, Activation& q, Activation& k, Activation& v) {
  linear(q_w, x, q_bias, q);
  linear(k_w, x, k_bias, k);
  linear(v_w, x, v_bias, v);
}

void Backend::rotary_attention(const RopeTable& table, KVCache& cache, int64_t layer, const AttentionShape& shape,
                               int64_t first_position, Activation& q, Activation& k, const Activation& v,
                               Activation& out) {
  rope(table, shape, first_position, q, k);
  store_kv(cache, layer, first_position, k, v);
  attention(cache, layer, shape, first_position, q, out);
}

void Backend::gated_mlp(const LinearWeights& gate_w, const LinearWeights& up_w,
                        const Activation* gate_bias, const Activation* up_bias,
                        const Activation& x, Activation& gate, Activation& up, Activation& out) {
  linear(gate_w, x, gate_bias, gate);
  linear(up_w, x, up_bias, up);
  silu_mul(gate, up, out);
}

}  // namespace awq_edge
