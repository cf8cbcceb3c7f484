// test_neon_kernels.cpp: every NEON kernel level this CPU runs against the Reference level, on
// random weights of every storage scheme, odd shapes, 1..11 tokens (decode and prefill paths; 9, 12,
// 14, 17 and 33 too for grouped schemes, whose prefill kernels work on tiles of tokens) and 1 or 3
// threads. Built for aarch64 (neon/CMakeLists.txt) and run under qemu for several CPU models by
// tests/native/test_neon_under_qemu.py, so that each level runs somewhere.
//
// Also: neon-dot and neon-i8mm must give exactly the floats of a scalar model of the int8 path
// (int8_model: x rounded by lrintf, exact integer sums, the same fp32 epilogue), and their prefill
// (m >= 8) must equal token-by-token decoding at the same level exactly (12 and 14 tokens end
// neon-i8mm's 8-token tiles with 2 and 4 token pairs, 9, 11, 17 and 33 with 1 and 2); packing at
// a NEON level from tensors in a mapped file, which releases the file's pages, must leave the
// mapped bytes as they were and compute the same y.
//
// Error measure: with ref from the Reference level and scale = max over (i, n) of sum_k |x[i][k]|
// |W[n][k]| (the size of the dot products' terms), each case must satisfy max |y - ref| <= tol *
// scale + 1e-6, tol per path:
//   fp32 arithmetic (f16, q8_row at every level; grouped on neon-fp32; faithful prefill)  2e-5
//   neon-fp16 grouped decode: x in fp16, group sums in fp16 lanes                         4e-3
//   neon-dot / neon-i8mm grouped: x rounded to int8 per group (<= 0.4% of its largest |x|)  2e-2
// Prints one line per level: cases run and the largest error / scale seen; exit status 1 on any
// failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "awq_edge/fp16.h"
#include "awq_edge/mapped_file.h"
#include "linear.h"
#include "thread_pool.h"

using namespace awq_edge;
using cpu::KernelLevel;

namespace {

// The module's tensors in FORMAT.md order and the bytes they point at.
struct RandomModule {
  Scheme scheme;
  int64_t rows, cols;
  std::vector<uint16_t> f16;     // weight (f16) or scales (q8_row, grouped)
  std::vector<int8_t> q8;        // q8_row weight
  std::vector<uint32_t> qweight, zeros;
  std::vector<uint16_t> scales;
  std::vector<TensorView> tensors;
};

void pack_bits(std::vector<uint32_t>& words, int64_t row_words, int64_t row, int64_t index, uint32_t value, int bits) {
  const uint64_t first = static_cast<uint64_t>(index) * bits;
  for (int b = 0; b < bits; ++b) {
    if (value >> b & 1) words[row * row_words + (first + b) / 32] |= 1u << ((first + b) % 32);
  }
}

RandomModule random_module(const std::string& scheme_name, int64_t rows, int64_t cols, std::mt19937& rng) {
  RandomModule m{*Scheme::parse(scheme_name), rows, cols, {}, {}, {}, {}, {}, {}};
  std::normal_distribution<float> normal(0.0f, 0.1f);
  const uint64_t n = rows, k = cols;
  if (m.scheme.kind == Scheme::Kind::F16) {
    for (int64_t i = 0; i < rows * cols; ++i) m.f16.push_back(float_to_fp16(normal(rng)));
    m.tensors = {{m.f16.data(), DType::F16, Shape{n, k}, n * k * 2}};
  } else if (m.scheme.kind == Scheme::Kind::Q8Row) {
    std::uniform_int_distribution<int> q(-127, 127);
    std::uniform_real_distribution<float> scale(0.0005f, 0.002f);
    for (int64_t i = 0; i < rows * cols; ++i) m.q8.push_back(static_cast<int8_t>(q(rng)));
    for (int64_t i = 0; i < rows; ++i) m.scales.push_back(float_to_fp16(scale(rng)));
    m.tensors = {{m.q8.data(), DType::I8, Shape{n, k}, n * k},
                 {m.scales.data(), DType::F16, Shape{n}, n * 2}};
  } else {
    const int bits = m.scheme.bits;
    const int64_t groups = cols / m.scheme.group_size;
    const int64_t q_words = cols * bits / 32, z_words = (groups * bits + 31) / 32;
    std::uniform_int_distribution<uint32_t> q(0, (1u << bits) - 1);
    std::uniform_real_distribution<float> scale(0.001f, 0.05f);
    m.qweight.assign(rows * q_words, 0);
    m.zeros.assign(rows * z_words, 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) pack_bits(m.qweight, q_words, r, c, q(rng), bits);
      for (int64_t j = 0; j < groups; ++j) pack_bits(m.zeros, z_words, r, j, q(rng), bits);
      for (int64_t j = 0; j < groups; ++j) m.scales.push_back(float_to_fp16(scale(rng)));
    }
    const uint64_t g = groups, qw = q_words, zw = z_words;
    m.tensors = {{m.qweight.data(), DType::U32, Shape{n, qw}, n * qw * 4},
                 {m.scales.data(), DType::F16, Shape{n, g}, n * g * 2},
                 {m.zeros.data(), DType::U32, Shape{n, zw}, n * zw * 4}};
  }
  return m;
}

uint32_t unpack_bits(const std::vector<uint32_t>& words, int64_t row_words, int64_t row, int64_t index, int bits) {
  const uint64_t first = static_cast<uint64_t>(index) * bits;
  uint32_t value = 0;
  for (int b = 0; b < bits; ++b) value |= (words[row * row_words + (first + b) / 32] >> ((first + b) % 32) & 1u) << b;
  return value;
}

// y (m, N) of a grouped module as the int8 levels define it, one value at a time: x of each group
// rounded by lrintf to int8 by its largest |x|, exact integer sums, then per group in order
// y = fma(float(sum q x_q - z sum x_q), s * x_scale, y). The kernels must give exactly these floats.
std::vector<float> int8_model(const RandomModule& module, const std::vector<float>& x, int64_t m) {
  const int64_t rows = module.rows, cols = module.cols, g = module.scheme.group_size, groups = cols / g;
  const int bits = module.scheme.bits;
  const int64_t q_words = cols * bits / 32, z_words = (groups * bits + 31) / 32;
  std::vector<float> y(m * rows);
  std::vector<int32_t> x_q(cols), x_qsums(groups);
  std::vector<float> x_scales(groups);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < groups; ++j) {
      float largest = 0.0f;
      for (int64_t k = j * g; k < (j + 1) * g; ++k) largest = std::max(largest, std::fabs(x[i * cols + k]));
      const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
      x_qsums[j] = 0;
      for (int64_t k = j * g; k < (j + 1) * g; ++k) x_qsums[j] += x_q[k] = std::lrintf(x[i * cols + k] * inverse);
      x_scales[j] = largest / 127.0f;
    }
    for (int64_t n = 0; n < rows; ++n) {
      float total = 0.0f;
      for (int64_t j = 0; j < groups; ++j) {
        int32_t sum = 0;
        for (int64_t k = j * g; k < (j + 1) * g; ++k) {
          sum += static_cast<int32_t>(unpack_bits(module.qweight, q_words, n, k, bits)) * x_q[k];
        }
        sum -= static_cast<int32_t>(unpack_bits(module.zeros, z_words, n, j, bits)) * x_qsums[j];
        total = std::fma(static_cast<float>(sum), fp16_to_float(module.scales[n * groups + j]) * x_scales[j], total);
      }
      y[i * rows + n] = total;
    }
  }
  return y;
}

// The tolerance of the module docstring for this level, scheme and token count.
double tolerance(KernelLevel level, const Scheme& scheme, int64_t m) {
  if (scheme.kind != Scheme::Kind::Grouped) return 2e-5;
  if (m >= 8 && level != KernelLevel::NeonDot && level != KernelLevel::NeonI8mm) return 2e-5;  // faithful prefill
  switch (level) {
    case KernelLevel::NeonFp16: return 4e-3;
    case KernelLevel::NeonDot:
    case KernelLevel::NeonI8mm: return 2e-2;
    default: return 2e-5;
  }
}

struct LevelResult {
  int cases = 0, failures = 0;
  double worst = 0.0;  // largest error / scale
};

void check(const RandomModule& module, int64_t m, int threads, KernelLevel level, std::mt19937& rng,
           LevelResult& result) {
  const int64_t rows = module.rows, cols = module.cols;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(m * cols);
  for (float& v : x) v = normal(rng);
  x[0] = 8.0f;  // an outlier, as activations have

  cpu::ThreadPool pool(threads);
  const cpu::LinearWeight ref_weight = cpu::pack_linear(module.scheme, rows, cols, module.tensors, KernelLevel::Reference);
  const cpu::LinearWeight weight = cpu::pack_linear(module.scheme, rows, cols, module.tensors, level);
  std::vector<float> ref(m * rows), y(m * rows, NAN);
  cpu::linear(ref_weight, x.data(), m, ref.data(), pool);
  cpu::linear(weight, x.data(), m, y.data(), pool);

  std::vector<float> w(cols);
  double scale = 0.0, error = 0.0;
  for (int64_t n = 0; n < rows; ++n) {
    cpu::dequantize_row(ref_weight, n, w.data());
    for (int64_t i = 0; i < m; ++i) {
      double terms = 0.0;
      for (int64_t k = 0; k < cols; ++k) terms += std::fabs(x[i * cols + k] * w[k]);
      scale = std::max(scale, terms);
      const double e = std::fabs(static_cast<double>(y[i * rows + n]) - ref[i * rows + n]);
      error = std::isnan(e) ? INFINITY : std::max(error, e);
    }
  }
  const double tol = tolerance(level, module.scheme, m);
  ++result.cases;
  result.worst = std::max(result.worst, error / scale);
  if (!(error <= tol * scale + 1e-6)) {
    ++result.failures;
    std::printf("FAIL %s %s %lldx%lld m=%lld threads=%d: max |y - ref| = %.3g > %.3g (scale %.3g)\n",
                cpu::kernel_level_name(level), module.scheme.name().c_str(), static_cast<long long>(rows),
                static_cast<long long>(cols), static_cast<long long>(m), threads, error, tol * scale + 1e-6, scale);
  }
  const bool int8 = level == KernelLevel::NeonDot || level == KernelLevel::NeonI8mm;
  if (int8 && module.scheme.kind == Scheme::Kind::Grouped) {
    const std::vector<float> model = int8_model(module, x, m);
    if (std::memcmp(model.data(), y.data(), y.size() * sizeof(float)) != 0) {
      ++result.failures;
      std::printf("FAIL %s %s %lldx%lld m=%lld threads=%d: y differs from the scalar int8 model\n",
                  cpu::kernel_level_name(level), module.scheme.name().c_str(), static_cast<long long>(rows),
                  static_cast<long long>(cols), static_cast<long long>(m), threads);
    }
  }
  if (int8 && module.scheme.kind == Scheme::Kind::Grouped && m >= 8) {
    std::vector<float> decoded(rows);
    int64_t differing = 0;
    for (int64_t i = 0; i < m; ++i) {
      cpu::linear(weight, x.data() + i * cols, 1, decoded.data(), pool);
      differing += std::memcmp(decoded.data(), y.data() + i * rows, rows * sizeof(float)) != 0;
    }
    if (differing != 0) {
      ++result.failures;
      std::printf("FAIL %s %s %lldx%lld m=%lld threads=%d: prefill differs from decoding token by token "
                  "for %lld tokens\n", cpu::kernel_level_name(level), module.scheme.name().c_str(), static_cast<long long>(rows),
                  static_cast<long long>(cols), static_cast<long long>(m), threads, static_cast<long long>(differing));
    }
  }
}

// The module's tensors written to a file and packed from its mapping at `level` (which releases the
// pages of grouped weights): the mapped bytes must be unchanged and y equal to packing from memory.
// Returns the number of failures.
int check_mapped_file(const RandomModule& module, KernelLevel level) {
  const std::string where = std::string(cpu::kernel_level_name(level)) + " " + module.scheme.name() + " from a file";
  char path[] = "/tmp/test_neon_kernels_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error(where + ": cannot create a temporary file");
  std::FILE* file = fdopen(fd, "wb");
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const TensorView& tensor : module.tensors) {
    offsets.push_back(offset);
    std::fwrite(tensor.data, 1, tensor.size, file);
    offset += tensor.size;
  }
  std::fclose(file);
  const auto mapping = MappedFile::open(path);
  std::remove(path);
  std::vector<TensorView> mapped = module.tensors;
  for (size_t i = 0; i < mapped.size(); ++i) {
    mapped[i].data = mapping->data() + offsets[i];
    mapped[i].mapping = mapping.get();
  }
  int failures = 0;
  const int64_t rows = module.rows, cols = module.cols, m = 9;
  std::vector<float> x(m * cols);
  for (int64_t k = 0; k < m * cols; ++k) x[k] = std::sin(0.37f * static_cast<float>(k));
  cpu::ThreadPool pool(2);
  const cpu::LinearWeight from_file = cpu::pack_linear(module.scheme, rows, cols, mapped, level);
  const cpu::LinearWeight from_memory = cpu::pack_linear(module.scheme, rows, cols, module.tensors, level);
  for (int64_t tokens : {int64_t{1}, m}) {
    std::vector<float> a(tokens * rows), b(tokens * rows);
    cpu::linear(from_file, x.data(), tokens, a.data(), pool);
    cpu::linear(from_memory, x.data(), tokens, b.data(), pool);
    if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) {
      ++failures;
      std::printf("FAIL %s: y of %lld tokens differs from packing the same tensors in memory\n", where.c_str(),
                  static_cast<long long>(tokens));
    }
  }
  for (size_t i = 0; i < mapped.size(); ++i) {
    if (std::memcmp(mapped[i].data, module.tensors[i].data, mapped[i].size) != 0) {
      ++failures;
      std::printf("FAIL %s: tensor %zu's mapped bytes changed after packing released them\n", where.c_str(), i);
    }
  }
  try {
    mapping->release(module.tensors[0].data, 16);  // not in the mapping
    ++failures;
    std::printf("FAIL %s: MappedFile::release accepted a range outside the mapping\n", where.c_str());
  } catch (const std::out_of_range&) {
  }
  return failures;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe before a crash
  const KernelLevel levels[] = {KernelLevel::NeonFp32, KernelLevel::NeonFp16, KernelLevel::NeonDot,
                                KernelLevel::NeonI8mm};
  std::printf("best faithful level: %s, best int8 level: %s\n", cpu::kernel_level_name(cpu::best_kernel_level()),
              cpu::kernel_level_name(cpu::best_int8_kernel_level()));
  std::vector<std::string> schemes = {"f16", "q8_row"};
  for (int bits : {3, 4})
    for (int g : {32, 64, 128}) schemes.push_back("q" + std::to_string(bits) + "_g" + std::to_string(g));

  int failures = 0;
  for (KernelLevel level : levels) {
    if (!cpu::kernel_level_supported(level)) {
      std::printf("%-10s skipped: this CPU lacks its extension\n", cpu::kernel_level_name(level));
      continue;
    }
    std::mt19937 rng(1234);
    LevelResult result;
    for (const std::string& name : schemes) {
      const Scheme scheme = *Scheme::parse(name);
      const int64_t g = scheme.kind == Scheme::Kind::Grouped ? scheme.group_size : 1;
      const std::vector<int64_t> col_choices = g > 1 ? std::vector<int64_t>{g, 3 * g, 512}
                                                     : std::vector<int64_t>{1, 7, 33, 100};
      for (int64_t rows : {1, 3, 5, 17, 64}) {
        for (int64_t cols : col_choices) {
          const RandomModule module = random_module(name, rows, cols, rng);
          std::vector<int64_t> token_counts = {1, 2, 3, 8, 11};
          if (g > 1) token_counts.insert(token_counts.end(), {9, 12, 14, 17, 33});
          for (int64_t m : token_counts) {
            for (int threads : {1, 3}) {
              if (threads > 1 && rows < 17) continue;
              check(module, m, threads, level, rng, result);
            }
          }
        }
      }
    }
    std::mt19937 file_rng(99);
    for (const char* name : {"q4_g32", "q3_g128"}) {
      const int failed = check_mapped_file(random_module(name, 67, 1024, file_rng), level);
      ++result.cases, result.failures += failed;
    }
    std::printf("%-10s %d cases, %d failed, largest error / scale %.3g\n", cpu::kernel_level_name(level),
                result.cases, result.failures, result.worst);
    failures += result.failures;
  }
  std::printf(failures == 0 ? "OK\n" : "FAILED\n");
  return failures == 0 ? 0 : 1;
}
