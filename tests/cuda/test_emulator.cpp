// test_emulator.cpp: the CUDA emulator (cuda/emulator/) runs kernels as CUDA specifies them, and
// reports the mistakes it claims to catch. Kernels are written here as for nvcc and launched with
// cuda/launch.h, as the backend does. Prints one line per check and "OK" at the end; exits 1 on
// the first failure. Built by tests/cuda/test_cuda_emulator.py (-DAWQ_EDGE_CUDA_EMULATOR=ON).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "async_copy.h"
#include "awq_edge/fp16.h"
#include "launch.h"
#include "race_detection.h"
#include "tensor_core.h"

using awq_edge::cuda::dynamic_shared;
using awq_edge::cuda::launch;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Runs `body`, expecting an exception whose message contains `expected`.
template <typename Body>
void expect_error(Body body, const std::string& expected, const std::string& what) {
  try {
    body();
  } catch (const std::exception& error) {
    const std::string message = error.what();
    check(message.find(expected) != std::string::npos, what + " (\"" + message + "\")");
    return;
  }
  check(false, what + " (no error)");
}

// ------------------------------------------------------------------------------------ kernels

// out[i] = sum of threadIdx.x over the warp, by a butterfly of __shfl_xor_sync.
__global__ void warp_sum_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Each thread writes its index to shared memory; after the barrier it reads its neighbour's.
__global__ void neighbour_kernel(int* out) {
  int* shared = dynamic_shared<int>();
  shared[threadIdx.x] = static_cast<int>(threadIdx.x + 1000 * blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = shared[(threadIdx.x + 1) % blockDim.x];
}

// neighbour_kernel without its barrier, reading the previous thread's entry (a race).
__global__ void racy_neighbour_kernel(int* out) {
  int* shared = dynamic_shared<int>();
  shared[threadIdx.x] = static_cast<int>(threadIdx.x);
  out[threadIdx.x] = shared[(threadIdx.x + blockDim.x - 1) % blockDim.x];
}

// Every thread of the block adds one to out[0] without an atomic (a race in global memory).
__global__ void racy_counter_kernel(int* out) { out[0] += 1; }

// Lanes pass values through shared memory with a shuffle, not a barrier, between the write and the
// read: a shuffle orders no memory (a race on a GPU with independent thread scheduling).
__global__ void shuffle_ordered_kernel(int* out) {
  int* shared = dynamic_shared<int>();
  shared[threadIdx.x] = static_cast<int>(threadIdx.x);
  const int sum = __shfl_xor_sync(0xFFFFFFFFu, static_cast<int>(threadIdx.x), 1);
  out[threadIdx.x] = shared[threadIdx.x ^ 1u] + sum;
}

// Reads dynamic shared memory that nobody wrote: the emulator fills it with 0xFF.
__global__ void unwritten_shared_kernel(float* out) { out[threadIdx.x] = dynamic_shared<float>()[threadIdx.x]; }

__global__ void divergent_shuffle_kernel(float* out) {
  float v = 1.0f;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xFFFFFFFFu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void partial_barrier_kernel(float* out) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void mixed_collectives_kernel(float* out) {
  if (threadIdx.x % 2 == 0) out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, 1.0f, 1);
  else __syncthreads();
}

// One mma.m16n8k16 per warp: fragments (PTX ISA tables, as tensor_core.h draws them) gathered
// from row-major A (16 x 16), B (16 x 8) and C (16 x 8); D written back row-major.
__global__ void mma_kernel(const uint16_t* a, const uint16_t* b, const float* c, float* d) {
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  auto pair = [](uint16_t low, uint16_t high) { return static_cast<uint32_t>(low) | (static_cast<uint32_t>(high) << 16); };
  const uint32_t ra[4] = {pair(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                          pair(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                          pair(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                          pair(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
  const uint32_t rb[2] = {pair(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
                          pair(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
  awq_edge::cuda_emulator::mma_m16n8k16_f32_f16(acc, ra, rb);
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

// cp.async: out[0] = the shared word before the wait (still the old value), out[1] after waiting
// for all but the newest group (the older copy done, the newer not), out[2] after waiting for all,
// out[3] a zero-filled copy.
__global__ void async_copy_kernel(const uint4* source, uint32_t* out) {
  uint4* shared = dynamic_shared<uint4>();
  shared[0] = make_uint4(7, 7, 7, 7);
  shared[1] = make_uint4(7, 7, 7, 7);
  shared[2] = make_uint4(7, 7, 7, 7);
  awq_edge::cuda::copy16_async(shared + 0, source + 0, true);
  awq_edge::cuda::commit_copies();
  awq_edge::cuda::copy16_async(shared + 1, source + 1, true);
  awq_edge::cuda::copy16_async(shared + 2, source + 1, false);
  awq_edge::cuda::commit_copies();
  out[0] = shared[0].x;
  awq_edge::cuda::wait_copies<1>();
  out[1] = shared[0].x * 100 + shared[1].x;
  awq_edge::cuda::wait_copies<0>();
  out[2] = shared[1].x;
  out[3] = shared[2].x + shared[2].w;
}

__global__ void add_one_kernel(int* x) { x[threadIdx.x] += 1; }

__global__ void copy_kernel(const float* x, float* y) { y[threadIdx.x] = x[threadIdx.x]; }

__global__ void throwing_kernel(int*) {
  if (threadIdx.x == 7) throw std::runtime_error("thread 7 failed");
}

// ------------------------------------------------------------------------------------- checks

template <typename T>
T* device_array(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) std::abort();
  cudaMemset(p, 0, n * sizeof(T));
  return static_cast<T*>(p);
}

void check_shuffle() {
  int* out = device_array<int>(3 * 64);
  launch("warp_sum", warp_sum_kernel, 3, 64, 0, nullptr, out);
  bool ok = true;
  for (int block = 0; block < 3; ++block)
    for (int i = 0; i < 64; ++i) ok &= out[block * 64 + i] == (i < 32 ? 496 : 496 + 32 * 32);
  check(ok, "__shfl_xor_sync butterfly: every lane of every warp holds the warp's sum");
  cudaFree(out);
}

void check_barrier_and_shared() {
  int* out = device_array<int>(2 * 96);
  launch("neighbour", neighbour_kernel, 2, 96, 96 * sizeof(int), nullptr, out);
  bool ok = true;
  for (int block = 0; block < 2; ++block)
    for (int i = 0; i < 96; ++i) ok &= out[block * 96 + i] == (i + 1) % 96 + 1000 * block;
  check(ok, "__syncthreads orders shared-memory writes before reads, per block");
  float* values = device_array<float>(32);
  launch("unwritten_shared", unwritten_shared_kernel, 1, 32, 32 * sizeof(float), nullptr, values);
  check(std::isnan(values[0]) && std::isnan(values[31]), "unwritten dynamic shared memory reads as NaN");
  cudaFree(out);
  cudaFree(values);
  if (awq_edge::cuda_emulator::race_detection::enabled) {
    std::printf("skip the racy kernel's thread orders under ThreadSanitizer (--race shared checks its report)\n");
    return;
  }
  // the race: in one of the two orders some thread reads its neighbour's entry before it is written
  int* racy = device_array<int>(2 * 64);
  setenv("AWQ_EDGE_CUDA_EMULATOR_ORDER", "forward", 1);
  launch("racy_neighbour", racy_neighbour_kernel, 1, 64, 64 * sizeof(int), nullptr, racy);
  setenv("AWQ_EDGE_CUDA_EMULATOR_ORDER", "reverse", 1);
  launch("racy_neighbour", racy_neighbour_kernel, 1, 64, 64 * sizeof(int), nullptr, racy + 64);
  unsetenv("AWQ_EDGE_CUDA_EMULATOR_ORDER");
  bool differ = false;
  for (int i = 0; i < 64; ++i) differ |= racy[i] != racy[64 + i];
  check(differ, "a missing __syncthreads gives different results in forward and reverse thread order");
  cudaFree(racy);
}

void check_async_copies() {
  uint4* source = device_array<uint4>(2);
  source[0] = make_uint4(1, 1, 1, 1);
  source[1] = make_uint4(2, 2, 2, 2);
  uint32_t* out = device_array<uint32_t>(4);
  launch("async_copy", async_copy_kernel, 1, 1, 3 * sizeof(uint4), nullptr, source, out);
  check(out[0] == 7 && out[1] == 107 && out[2] == 2 && out[3] == 0,
        "cp.async lands at its group's wait, oldest group first, and zero-fills (got " + std::to_string(out[0]) + ", " +
            std::to_string(out[1]) + ", " + std::to_string(out[2]) + ", " + std::to_string(out[3]) + ")");
  cudaFree(source);
  cudaFree(out);
}

void check_mma() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  std::vector<uint16_t> a(16 * 16), b(16 * 8);
  std::vector<float> c(16 * 8);
  for (auto& v : a) v = awq_edge::float_to_fp16(uniform(rng));
  for (auto& v : b) v = awq_edge::float_to_fp16(uniform(rng));
  for (auto& v : c) v = uniform(rng);
  uint16_t* da = device_array<uint16_t>(a.size());
  uint16_t* db = device_array<uint16_t>(b.size());
  float* dc = device_array<float>(c.size());
  float* dd = device_array<float>(c.size());
  cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
  launch("mma", mma_kernel, 1, 32, 0, nullptr, da, db, dc, dd);
  double worst = 0.0;
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      double expected = c[i * 8 + j];
      for (int k = 0; k < 16; ++k) {
        expected += static_cast<double>(awq_edge::fp16_to_float(a[i * 16 + k])) * awq_edge::fp16_to_float(b[k * 8 + j]);
      }
      worst = std::max(worst, std::abs(dd[i * 8 + j] - expected));
    }
  }
  check(worst < 1e-5, "mma.m16n8k16 equals A B + C computed in double (max error " + std::to_string(worst) + ")");
  for (void* p : {static_cast<void*>(da), static_cast<void*>(db), static_cast<void*>(dc), static_cast<void*>(dd)}) {
    cudaFree(p);
  }
}

void check_reported_mistakes() {
  float* out = device_array<float>(64);
  expect_error([&] { launch("divergent", divergent_shuffle_kernel, 1, 32, 0, nullptr, out); }, "not converged",
               "a shuffle that half the warp skips is reported");
  expect_error([&] { launch("partial_barrier", partial_barrier_kernel, 1, 64, 0, nullptr, out); },
               "__syncthreads is not reached by every thread", "a barrier that some threads skip is reported");
  expect_error([&] { launch("mixed", mixed_collectives_kernel, 1, 32, 0, nullptr, out); }, "not converged",
               "a warp whose lanes wait at a shuffle and at __syncthreads is reported");
  int* ints = device_array<int>(32);
  expect_error([&] { launch("throwing", throwing_kernel, 1, 32, 0, nullptr, ints); }, "thread 7 failed",
               "an exception inside a thread reaches the launch");
  expect_error([&] { launch("too_big", add_one_kernel, 1, 2048, 0, nullptr, ints); }, "cudaErrorInvalidConfiguration",
               "a block of 2048 threads is refused at launch, as on a GPU");
  expect_error([&] { launch("too_much_shared", add_one_kernel, 1, 32, 64 * 1024, nullptr, ints); },
               "cudaErrorInvalidConfiguration", "64 KiB of dynamic shared memory without opt-in is refused");
  cudaFree(out);
  cudaFree(ints);
}

void check_graphs() {
  int* x = device_array<int>(32);
  cudaStream_t stream = nullptr;
  cudaStreamCreate(&stream);
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  launch("add_one", add_one_kernel, 1, 32, 0, stream, x);
  int host = 5;
  const bool copy_refused = cudaMemcpyAsync(x, &host, 4, cudaMemcpyHostToDevice, stream) != cudaSuccess;
  cudaGetLastError();
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream, &graph);
  check(x[0] == 0, "a launch while the stream is captured is recorded, not run");
  check(copy_refused, "a copy from host memory while capturing is refused");
  cudaGraphExec_t exec = nullptr;
  cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphLaunch(exec, stream);
  cudaGraphLaunch(exec, stream);
  check(x[0] == 2 && x[31] == 2, "each replay of the recorded graph runs the launch once");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  cudaFree(x);
}

// Pinned host memory as the backend's AWQ_EDGE_CUDA_WEIGHTS=host uses it: a kernel reads it through the
// device pointer; only cudaHostAlloc's memory has one, and only it can be given to cudaFreeHost.
void check_pinned_host_memory() {
  float* pinned = nullptr;
  check(cudaHostAlloc(reinterpret_cast<void**>(&pinned), 32 * sizeof(float), cudaHostAllocMapped) == cudaSuccess,
        "cudaHostAlloc of 128 bytes");
  for (int i = 0; i < 32; ++i) pinned[i] = static_cast<float>(i);
  void* mapped = nullptr;
  check(cudaHostGetDevicePointer(&mapped, pinned, 0) == cudaSuccess, "a pinned allocation has a device pointer");
  float* y = device_array<float>(32);
  launch("copy", copy_kernel, 1, 32, 0, nullptr, static_cast<const float*>(mapped), y);
  check(y[0] == 0.0f && y[31] == 31.0f, "a kernel reads pinned host memory through its device pointer");
  float ordinary[4] = {};
  check(cudaHostGetDevicePointer(&mapped, ordinary, 0) == cudaErrorInvalidValue,
        "memory that cudaHostAlloc did not give has no device pointer");
  check(cudaFreeHost(ordinary) == cudaErrorInvalidValue, "cudaFreeHost refuses memory it did not give");
  cudaGetLastError();
  check(cudaFreeHost(pinned) == cudaSuccess, "cudaFreeHost frees pinned memory");
  cudaFree(y);
}

// Thread 32 of a copy reads x[32] of a 32-float array.
int read_out_of_bounds() {
  float* x = device_array<float>(32);
  float* y = device_array<float>(33);
  launch("copy", copy_kernel, 1, 33, 0, nullptr, x, y);
  std::printf("read y[32] = %g without a report\n", static_cast<double>(y[32]));
  return 0;
}

// For a ThreadSanitizer build (race_detection.h): runs one racy kernel, which TSan must report.
// shared: a missing __syncthreads; global: a plain += by every thread; shuffle: lanes that rely on a
// shuffle to order shared memory.
int race(const std::string& kind) {
  int* out = device_array<int>(64);
  if (kind == "shared") {
    launch("racy_neighbour", racy_neighbour_kernel, 1, 64, 64 * sizeof(int), nullptr, out);
  } else if (kind == "global") {
    launch("racy_counter", racy_counter_kernel, 1, 64, 0, nullptr, out);
  } else if (kind == "shuffle") {
    launch("shuffle_ordered", shuffle_ordered_kernel, 1, 32, 32 * sizeof(int), nullptr, out);
  } else {
    std::fprintf(stderr, "--race takes shared, global or shuffle, not '%s'\n", kind.c_str());
    return 2;
  }
  std::printf("ran the racy kernel (%s): out[0] = %d\n", kind.c_str(), out[0]);
  cudaFree(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--read-out-of-bounds") return read_out_of_bounds();
  if (argc > 2 && std::string(argv[1]) == "--race") return race(argv[2]);
  check_shuffle();
  check_barrier_and_shared();
  check_mma();
  check_async_copies();
  check_reported_mistakes();
  check_graphs();
  check_pinned_host_memory();
  if (failures != 0) {
    std::printf("%d checks failed\n", failures);
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
