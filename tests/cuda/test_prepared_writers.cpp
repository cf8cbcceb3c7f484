// test_prepared_writers.cpp: the RMSNorm kernels (cuda/rms_norm.cu), which also write their output's
// prepared form for the next q4 layer, write the very bytes and multipliers that prepare_activations
// writes from that output (prepared_activations.h: the decode kernels must not see which kernel
// prepared their input), and the norm itself within fp32 rounding of a double reference. Every group
// size, rows kept in registers by 32..1024 threads with 1, 2 and 4 float4 each (partial warps
// included), and rows the loop kernel takes (a stride that is not whole float4s, more than 16384
// columns). Built for the CUDA emulator (cuda/emulator/CMakeLists.txt) and run by
// tests/cuda/test_cuda_emulator.py, also with AddressSanitizer. Prints one line per case and "OK".
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "kernels.h"

namespace cuda = awq_edge::cuda;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <typename T>
T* device_copy(const std::vector<T>& host) {
  void* p = nullptr;
  if (cudaMalloc(&p, host.size() * sizeof(T)) != cudaSuccess) std::abort();
  cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T*>(p);
}

template <typename T>
std::vector<T> host_copy(const T* device, size_t n) {
  std::vector<T> host(n);
  cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost);
  return host;
}

struct Case {
  int64_t rows, cols, stride;  // x, delta and out share the stride
  int group_size;
  bool residual;  // with delta: x += delta first
};

void run(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(c.rows * c.stride, 0.0f), delta(c.rows * c.stride, 0.0f), weight(c.cols);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t k = 0; k < c.cols; ++k) {
      x[r * c.stride + k] = 3.0f * normal(rng);
      delta[r * c.stride + k] = normal(rng);
    }
  }
  for (auto& w : weight) w = normal(rng);
  for (int64_t k = 0; k < c.group_size; ++k) weight[k] = 0.0f;  // group 0 all zeros: multiplier 1
  weight[c.cols - 1] = 4096.0f;                                  // a group with a large multiplier

  float* dx = device_copy(x);
  float* dd = device_copy(delta);
  float* dw = device_copy(weight);
  float* dout = device_copy(std::vector<float>(c.rows * c.stride, 0.0f));
  const int64_t groups = c.cols / c.group_size;
  uint16_t* prepared = device_copy(std::vector<uint16_t>(c.rows * c.cols, 0));
  float* multipliers = device_copy(std::vector<float>(c.rows * groups, 0.0f));
  uint16_t* expected_prepared = device_copy(std::vector<uint16_t>(c.rows * c.cols, 0));
  float* expected_multipliers = device_copy(std::vector<float>(c.rows * groups, 0.0f));

  const cuda::Matrix mx{dx, c.rows, c.cols, c.stride}, md{dd, c.rows, c.cols, c.stride};
  const cuda::Matrix mout{dout, c.rows, c.cols, c.stride};
  const cuda::PreparedOutput output{prepared, multipliers, c.group_size};
  const float eps = 1e-6f;
  cuda::rms_norm(mx, c.residual ? &md : nullptr, dw, eps, mout, nullptr, &output);
  cuda::prepare_activations(mout, c.group_size, true, expected_prepared, expected_multipliers, nullptr);
  cudaStreamSynchronize(nullptr);

  const auto got_x = host_copy(dx, x.size()), got_out = host_copy(dout, x.size());
  double worst = 0.0, largest = 0.0;
  bool residual_ok = true;
  for (int64_t r = 0; r < c.rows; ++r) {
    double squares = 0.0;
    for (int64_t k = 0; k < c.cols; ++k) {
      const double v = static_cast<double>(x[r * c.stride + k]) + (c.residual ? delta[r * c.stride + k] : 0.0f);
      residual_ok &= got_x[r * c.stride + k] == static_cast<float>(v);
      squares += v * v;
    }
    const double inverse_rms = 1.0 / std::sqrt(squares / static_cast<double>(c.cols) + eps);
    for (int64_t k = 0; k < c.cols; ++k) {
      const double v = static_cast<double>(x[r * c.stride + k]) + (c.residual ? delta[r * c.stride + k] : 0.0f);
      const double reference = v * inverse_rms * weight[k];
      worst = std::fmax(worst, std::fabs(got_out[r * c.stride + k] - reference));
      largest = std::fmax(largest, std::fabs(reference));
    }
  }
  const auto got_prepared = host_copy(prepared, c.rows * c.cols);
  const auto want_prepared = host_copy(expected_prepared, c.rows * c.cols);
  const auto got_multipliers = host_copy(multipliers, c.rows * groups);
  const auto want_multipliers = host_copy(expected_multipliers, c.rows * groups);
  const bool same_bytes = std::memcmp(got_prepared.data(), want_prepared.data(), got_prepared.size() * 2) == 0;
  const bool same_multipliers =
      std::memcmp(got_multipliers.data(), want_multipliers.data(), got_multipliers.size() * 4) == 0;
  bool multipliers_vary = false;  // the case reaches more than one power of two
  for (float m : got_multipliers) multipliers_vary |= m != got_multipliers[0];

  const std::string name = std::to_string(c.rows) + " x " + std::to_string(c.cols) + " (stride " +
                           std::to_string(c.stride) + "), groups of " + std::to_string(c.group_size) +
                           (c.residual ? ", x += delta" : "");
  check(residual_ok, name + ": x holds x + delta as fp32 adds it");
  check(worst <= 1e-5 * largest, name + ": out within 1e-5 of the double reference (" + std::to_string(worst) +
                                     " of " + std::to_string(largest) + ")");
  check(same_bytes && same_multipliers && multipliers_vary,
        name + ": prepared bytes and multipliers are prepare_activations' of out");
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dd), static_cast<void*>(dw), static_cast<void*>(dout),
                  static_cast<void*>(prepared), static_cast<void*>(multipliers),
                  static_cast<void*>(expected_prepared), static_cast<void*>(expected_multipliers)}) {
    cudaFree(p);
  }
}

}  // namespace

int main() {
  const Case cases[] = {
      {1, 96, 96, 32, true},          // 24 float4: one warp, 8 lanes past the row
      {3, 576, 576, 64, true},        // SmolLM2's hidden size: 160 threads, the last warp half used
      {2, 576, 576, 32, false},
      {1, 2048, 2048, 128, true},     // 256 threads, 2 float4 each
      {2, 4096, 4096, 128, true},     // LLaMA-2-7B: 256 threads, 4 float4 each
      {1, 4096, 4096, 64, false},
      {1, 8192, 8192, 128, true},     // 512 threads, 4 float4 each
      {1, 12288, 12288, 32, true},    // 768 threads
      {2, 640, 644, 64, true},        // a stride of whole float4s past the row
      {2, 640, 642, 128, true},       // a stride of half a float4: the loop kernel
      {1, 16512, 16512, 128, true},   // past 16384 columns: the loop kernel
  };
  uint32_t seed = 1;
  for (const Case& c : cases) run(c, seed++);
  if (failures != 0) {
    std::printf("%d checks failed\n", failures);
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
