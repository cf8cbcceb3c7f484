// linear.cpp: packing, the Reference kernels and the kernel-level dispatch of linear.h.
//
// The Reference level is the definition every faster level is tested against: each output row
// is dequantized to fp32 exactly as FORMAT.md section 5 says (W[n][k] = (q - z) * s in fp32
// from the fp16 scale) and dotted with each row of x, accumulating in double. Threads split
// the N output rows.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "awq_edge/fp16.h"
#include "awq_edge/mapped_file.h"
#include "linear.h"
#include "linear_layout.h"
#include "thread_pool.h"

namespace awq_edge::cpu {

namespace {

bool cpu_has_avx2() {
#if AWQ_EDGE_CPU_AVX2
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if AWQ_EDGE_CPU_AVX512
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// "[cpu linear] q4_g64 module 576x576"
std::string describe(const Scheme& scheme, int64_t rows, int64_t cols) {
  return "[cpu linear] " + scheme.name() + " module " + std::to_string(rows) + "x" + std::to_string(cols);
}

// Checks count, dtype and shape of the module's tensors against FORMAT.md section 5.
void check_tensors(const Scheme& scheme, int64_t rows, int64_t cols, const std::vector<TensorView>& tensors) {
  const std::string module = describe(scheme, rows, cols);
  if (rows < 1 || cols < 1) throw std::invalid_argument(module + ": rows and columns must be >= 1");
  if (scheme.kind == Scheme::Kind::Grouped && cols % scheme.group_size != 0) {
    throw std::invalid_argument(module + ": " + std::to_string(cols) + " columns are not a multiple of the group size " +
                                std::to_string(scheme.group_size));
  }
  const std::vector<TensorSpec> specs =
      module_tensors(Module{"", scheme, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)});
  if (tensors.size() != specs.size()) {
    throw std::invalid_argument(module + ": expected " + std::to_string(specs.size()) + " tensors, found " +
                                std::to_string(tensors.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    const TensorView& tensor = tensors[i];
    const std::string name = spec.name.substr(1);  // ".qweight" -> "qweight"
    if (tensor.dtype != spec.dtype || tensor.shape != spec.shape) {
      throw std::invalid_argument(module + ": tensor " + std::to_string(i) + " (" + name + ") expected " +
                                  dtype_name(spec.dtype) + " " + spec.shape.to_string() + ", found " +
                                  dtype_name(tensor.dtype) + " " + tensor.shape.to_string());
    }
    if (tensor.data == nullptr) {
      throw std::invalid_argument(module + ": tensor " + std::to_string(i) + " (" + name + ") has no data");
    }
  }
}

std::vector<uint8_t> unpack_zeros(const LinearWeight& weight, const uint32_t* packed, int64_t words_per_row) {
  const int64_t groups = weight.cols / weight.scheme.group_size;
  std::vector<uint8_t> zeros(static_cast<size_t>(weight.rows * groups));
  for (int64_t n = 0; n < weight.rows; ++n) {
    for (int64_t j = 0; j < groups; ++j) {
      zeros[n * groups + j] = static_cast<uint8_t>(read_packed(packed + n * words_per_row, j, weight.scheme.bits));
    }
  }
  return zeros;
}

// 3-bit values rewritten as 4-bit nibbles, 8 to a u32, low nibble first (the q4 layout).
std::vector<uint32_t> widen_to_nibbles(const uint32_t* qweight, int64_t rows, int64_t cols) {
  const int64_t words_in = cols * 3 / 32;
  const int64_t words_out = cols / 8;
  std::vector<uint32_t> nibbles(static_cast<size_t>(rows * words_out), 0);
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t k = 0; k < cols; ++k) {
      nibbles[n * words_out + k / 8] |= read_packed(qweight + n * words_in, k, 3) << (4 * (k % 8));
    }
  }
  return nibbles;
}

void linear_reference(const LinearWeight& weight, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const int64_t rows = weight.rows, cols = weight.cols;
  pool.run(rows, [&](int64_t begin, int64_t end) {
    std::vector<float> w(static_cast<size_t>(cols));
    for (int64_t n = begin; n < end; ++n) {
      dequantize_row(weight, n, w.data());
      for (int64_t i = 0; i < m; ++i) {
        const float* x_row = x + i * cols;
        double sum = 0.0;
        for (int64_t k = 0; k < cols; ++k) sum += static_cast<double>(w[k]) * x_row[k];
        y[i * rows + n] = static_cast<float>(sum);
      }
    }
  });
}

}  // namespace

bool kernel_level_supported(KernelLevel level) {
  switch (level) {
    case KernelLevel::Reference: return true;
    case KernelLevel::AVX2: return cpu_has_avx2();
    case KernelLevel::AVX512: return cpu_has_avx512();
    default:
#if AWQ_EDGE_WITH_NEON
      return neon_level_supported(level);
#else
      return false;
#endif
  }
}

KernelLevel best_kernel_level() {
  for (KernelLevel level : {KernelLevel::AVX512, KernelLevel::AVX2, KernelLevel::NeonFp16, KernelLevel::NeonFp32}) {
    if (kernel_level_supported(level)) return level;
  }
  return KernelLevel::Reference;
}

KernelLevel best_int8_kernel_level() {
  for (KernelLevel level : {KernelLevel::NeonI8mm, KernelLevel::NeonDot}) {
    if (kernel_level_supported(level)) return level;
  }
  return KernelLevel::Reference;
}

const char* kernel_level_name(KernelLevel level) {
  switch (level) {
    case KernelLevel::Reference: return "reference";
    case KernelLevel::AVX2: return "avx2";
    case KernelLevel::AVX512: return "avx512";
    case KernelLevel::NeonFp32: return "neon-fp32";
    case KernelLevel::NeonFp16: return "neon-fp16";
    case KernelLevel::NeonDot: return "neon-dot";
    case KernelLevel::NeonI8mm: return "neon-i8mm";
  }
  return "unknown";
}

LinearWeight pack_linear(const Scheme& scheme, int64_t rows, int64_t cols, const std::vector<TensorView>& tensors,
                         KernelLevel level) {
  check_tensors(scheme, rows, cols, tensors);
  if (level == KernelLevel::AVX2 && !cpu_has_avx2()) {
    throw std::invalid_argument(describe(scheme, rows, cols) +
                                ": kernel level avx2 is not available (this CPU or build lacks AVX2, FMA or F16C)");
  }
  if (level == KernelLevel::AVX512 && !cpu_has_avx512()) {
    throw std::invalid_argument(describe(scheme, rows, cols) +
                                ": kernel level avx512 is not available (this CPU or build lacks AVX-512 F, BW, VL "
                                "or VNNI, or AVX2)");
  }
  if (!kernel_level_supported(level)) {
    throw std::invalid_argument(describe(scheme, rows, cols) + ": kernel level " + kernel_level_name(level) +
                                " is not available on this CPU or in this build");
  }
  LinearWeight weight{scheme, rows, cols, level, nullptr};
  auto layout = std::make_shared<LinearWeight::Layout>();
  switch (scheme.kind) {
    case Scheme::Kind::F16:
      layout->weight_f16 = tensors[0].as<uint16_t>();
      break;
    case Scheme::Kind::Q8Row:
      layout->weight_q8 = tensors[0].as<int8_t>();
      layout->scales = tensors[1].as<uint16_t>();
      break;
    case Scheme::Kind::Grouped:
      layout->qweight = tensors[0].as<uint32_t>();
      layout->scales = tensors[1].as<uint16_t>();
      layout->zeros = unpack_zeros(weight, tensors[2].as<uint32_t>(), static_cast<int64_t>(tensors[2].shape[1]));
      if (scheme.bits == 3 && level != KernelLevel::Reference) layout->nibbles = widen_to_nibbles(layout->qweight, rows, cols);
      break;
  }
#if AWQ_EDGE_WITH_NEON
  if (is_neon_level(level)) {
    pack_neon(weight, *layout);
    // Grouped weights are now copies: the file's pages of the module need not stay resident.
    if (scheme.kind == Scheme::Kind::Grouped) {
      for (const TensorView& tensor : tensors) {
        if (tensor.mapping != nullptr) tensor.mapping->release(tensor.data, tensor.size);
      }
    }
  }
#endif
  weight.layout = std::move(layout);
  return weight;
}

void dequantize_row(const LinearWeight& weight, int64_t row, float* out) {
  const LinearWeight::Layout& layout = *weight.layout;
  const int64_t cols = weight.cols;
  switch (weight.scheme.kind) {
    case Scheme::Kind::F16:
      for (int64_t k = 0; k < cols; ++k) out[k] = fp16_to_float(layout.weight_f16[row * cols + k]);
      return;
    case Scheme::Kind::Q8Row: {
      const float scale = fp16_to_float(layout.scales[row]);
      for (int64_t k = 0; k < cols; ++k) out[k] = static_cast<float>(layout.weight_q8[row * cols + k]) * scale;
      return;
    }
    case Scheme::Kind::Grouped: {
#if AWQ_EDGE_WITH_NEON
      if (is_neon_level(weight.level)) return dequantize_row_neon_grouped(weight, row, out);
#endif
      const int bits = weight.scheme.bits;
      const int64_t group_size = weight.scheme.group_size;
      const int64_t groups = cols / group_size;
      const uint32_t* words = layout.qweight + row * (cols * bits / 32);
      for (int64_t k = 0; k < cols; ++k) {
        const int64_t group = row * groups + k / group_size;
        const float q = static_cast<float>(read_packed(words, k, bits));
        out[k] = (q - static_cast<float>(layout.zeros[group])) * fp16_to_float(layout.scales[group]);
      }
      return;
    }
  }
}

void linear(const LinearWeight& weight, const float* x, int64_t m, float* y, ThreadPool& pool) {
  if (m <= 0) return;
#if AWQ_EDGE_CPU_AVX512
  if (weight.level == KernelLevel::AVX512) return linear_avx512(weight, x, m, y, pool);
#endif
#if AWQ_EDGE_CPU_AVX2
  if (weight.level == KernelLevel::AVX2) return linear_avx2(weight, x, m, y, pool);
#endif
#if AWQ_EDGE_WITH_NEON
  if (is_neon_level(weight.level)) return linear_neon(weight, x, m, y, pool);
#endif
  linear_reference(weight, x, m, y, pool);
}

}  // namespace awq_edge::cpu
