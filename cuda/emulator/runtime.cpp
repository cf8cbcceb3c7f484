// runtime.cpp: the emulated CUDA runtime API of include/cuda_runtime.h.
//
// Work given to a stream runs at once on the calling thread, except while the stream is being
// captured: then kernel launches and copies are recorded (not run, as on a GPU), and a graph made
// from them replays them in order. Device memory is host memory from malloc; its allocations are
// tracked so that freeing an unknown pointer, or copying with a wrong direction, is an error.
// Pinned host memory (cudaHostAlloc) is host memory too, tracked apart: it is not device memory
// for a copy's direction, and only an integrated GPU's counts against the device memory.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_runtime.h"

struct CUgraph_st {
  std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> work;
};
struct CUstream_st {
  bool capturing = false;
  cudaError_t capture_error = cudaSuccess;
  std::unique_ptr<CUgraph_st> graph;
};

namespace {

std::mutex state_mutex;
cudaError_t last_error = cudaSuccess;
struct Allocation {
  size_t bytes;
  bool counted;  // taken from the device memory: all of it, and pinned memory on an integrated GPU
};
using Allocations = std::map<const void*, Allocation>;
Allocations allocations;  // cudaMalloc's pointers
Allocations pinned;       // cudaHostAlloc's pointers
size_t allocated = 0;     // the counted bytes

cudaError_t fail(cudaError_t error) {
  std::lock_guard<std::mutex> lock(state_mutex);
  last_error = error;
  return error;
}

bool is_device(const void* pointer) {
  std::lock_guard<std::mutex> lock(state_mutex);
  auto it = allocations.upper_bound(pointer);
  if (it == allocations.begin()) return false;
  --it;
  return static_cast<const char*>(pointer) < static_cast<const char*>(it->first) + it->second.bytes;
}

// The direction of a copy must match where the pointers are (a GPU faults or copies garbage otherwise).
bool direction_matches(void* destination, const void* source, cudaMemcpyKind kind) {
  switch (kind) {
    case cudaMemcpyHostToDevice: return is_device(destination) && !is_device(source);
    case cudaMemcpyDeviceToHost: return !is_device(destination) && is_device(source);
    case cudaMemcpyDeviceToDevice: return is_device(destination) && is_device(source);
    case cudaMemcpyHostToHost: return !is_device(destination) && !is_device(source);
    case cudaMemcpyDefault: return true;
  }
  return false;
}

// Runs `work` now, or records it when the stream is being captured.
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work) {
  if (stream != nullptr && stream->capturing) {
    stream->graph->work.push_back(std::move(work));
    return cudaSuccess;
  }
  work();
  return cudaSuccess;
}

int emulated_sms() {
  const char* text = std::getenv("AWQ_EDGE_CUDA_EMULATOR_SMS");
  const int sms = text != nullptr ? std::atoi(text) : 16;
  return sms > 0 ? sms : 16;
}

// The device memory: 16 GiB, or AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB.
size_t device_bytes() {
  const char* text = std::getenv("AWQ_EDGE_CUDA_EMULATOR_MEMORY_MIB");
  const double mib = text != nullptr ? std::strtod(text, nullptr) : 0.0;
  return mib > 0.0 ? static_cast<size_t>(mib * 1048576.0) : size_t{16} << 30;
}

// AWQ_EDGE_CUDA_EMULATOR_DEVICE, "" when unset.
std::string device_setting() {
  const char* text = std::getenv("AWQ_EDGE_CUDA_EMULATOR_DEVICE");
  return text != nullptr ? text : "";
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  const std::string setting = device_setting();
  *count = 0;
  if (setting == "none") return fail(cudaErrorNoDevice);
  if (setting == "old-driver") return fail(cudaErrorInsufficientDriver);
  *count = 1;
  return cudaSuccess;
}

namespace awq_edge::cuda_emulator {
cudaError_t kernel_image_status() {
  return device_setting() == "no-kernels" ? fail(cudaErrorNoKernelImageForDevice) : cudaSuccess;
}
}  // namespace awq_edge::cuda_emulator

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidValue); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidValue);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "CUDA emulator on the CPU (tests only)");
  prop->totalGlobalMem = device_bytes();
  prop->major = 8;
  prop->minor = 7;
  const std::string setting = device_setting();
  if (setting.size() >= 5 && setting.compare(0, 3, "sm_") == 0) {  // sm_XY: compute capability X.Y
    prop->major = std::atoi(setting.substr(3, setting.size() - 4).c_str());
    prop->minor = setting.back() - '0';
  }
  prop->multiProcessorCount = emulated_sms();
  prop->integrated = setting == "integrated" ? 1 : 0;  // a Jetson: sm_87 sharing the CPU's DRAM
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::mutex> lock(state_mutex);
  const cudaError_t error = last_error;
  last_error = cudaSuccess;
  return error;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNoKernelImageForDevice: return "cudaErrorNoKernelImageForDevice";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator: see stderr)";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorStreamCaptureInvalidated: return "operation not permitted while the stream is being captured";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing (emulator: host memory in a recorded copy)";
  }
  return "unknown error";
}

namespace {

// malloc's memory, recorded in `table` and, when `counted`, taken from the device memory (out of
// memory when it does not fit).
cudaError_t take(Allocations& table, void** pointer, size_t bytes, bool counted) {
  std::lock_guard<std::mutex> lock(state_mutex);
  *pointer = counted && allocated + bytes > device_bytes() ? nullptr : std::malloc(bytes);
  if (*pointer == nullptr) {
    last_error = cudaErrorMemoryAllocation;
    return cudaErrorMemoryAllocation;
  }
  table[*pointer] = Allocation{bytes, counted};
  if (counted) allocated += bytes;
  return cudaSuccess;
}

// Frees memory that `take` recorded in `table`; any other pointer is an error.
cudaError_t give_back(Allocations& table, void* pointer) {
  if (pointer == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(state_mutex);
  const auto it = table.find(pointer);
  if (it == table.end()) {
    last_error = cudaErrorInvalidValue;
    return cudaErrorInvalidValue;
  }
  if (it->second.counted) allocated -= it->second.bytes;
  table.erase(it);
  std::free(pointer);
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMalloc(void** pointer, size_t bytes) { return take(allocations, pointer, bytes, true); }

cudaError_t cudaFree(void* pointer) { return give_back(allocations, pointer); }

cudaError_t cudaHostAlloc(void** pointer, size_t bytes, unsigned int flags) {
  if (flags != cudaHostAllocMapped) return fail(cudaErrorInvalidValue);
  return take(pinned, pointer, bytes, device_setting() == "integrated");  // a Jetson: one DRAM
}

cudaError_t cudaFreeHost(void* pointer) { return give_back(pinned, pointer); }

cudaError_t cudaHostGetDevicePointer(void** device_pointer, void* host_pointer, unsigned int flags) {
  std::lock_guard<std::mutex> lock(state_mutex);
  if (flags != 0 || pinned.count(host_pointer) == 0) {  // only memory from cudaHostAlloc is mapped
    last_error = cudaErrorInvalidValue;
    return cudaErrorInvalidValue;
  }
  *device_pointer = host_pointer;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(state_mutex);
  const size_t total = device_bytes();
  *free_bytes = total > allocated ? total - allocated : 0;
  *total_bytes = total;
  return cudaSuccess;
}

cudaError_t cudaMemset(void* pointer, int value, size_t bytes) {
  if (!is_device(pointer)) return fail(cudaErrorInvalidValue);
  std::memset(pointer, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* destination, const void* source, size_t bytes, cudaMemcpyKind kind) {
  if (!direction_matches(destination, source, kind)) return fail(cudaErrorInvalidValue);
  std::memcpy(destination, source, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* destination, const void* source, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!direction_matches(destination, source, kind)) return fail(cudaErrorInvalidValue);
  if (stream != nullptr && stream->capturing && kind != cudaMemcpyDeviceToDevice) {
    // a recorded copy would read or write host memory at replay time, which the caller cannot
    // know to keep alive (and a GPU refuses pageable memory in a capture)
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  return enqueue(stream, [=] { std::memcpy(destination, source, bytes); });
}

cudaError_t cudaMemcpy2DAsync(void* destination, size_t destination_pitch, const void* source, size_t source_pitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!direction_matches(destination, source, kind) || width > destination_pitch || width > source_pitch) {
    return fail(cudaErrorInvalidValue);
  }
  if (stream != nullptr && stream->capturing && kind != cudaMemcpyDeviceToDevice) {
    return fail(cudaErrorStreamCaptureUnsupported);  // as in cudaMemcpyAsync
  }
  return enqueue(stream, [=] {
    for (size_t row = 0; row < height; ++row) {
      std::memcpy(static_cast<char*>(destination) + row * destination_pitch,
                  static_cast<const char*>(source) + row * source_pitch, width);
    }
  });
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = new CUstream_st();
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream != nullptr && stream->capturing) return fail(cudaErrorStreamCaptureInvalidated);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (stream == nullptr || stream->capturing) return fail(cudaErrorInvalidValue);
  stream->capturing = true;
  stream->graph = std::make_unique<CUgraph_st>();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (stream == nullptr || !stream->capturing) return fail(cudaErrorInvalidValue);
  stream->capturing = false;
  *graph = stream->graph.release();
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->work};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return fail(cudaErrorInvalidValue);
  return enqueue(stream, [exec] {
    for (const auto& work : exec->work) work();
  });
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

namespace awq_edge::cuda_emulator {

void launch_kernel(const char* name, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                   std::function<void()> kernel) {
  const std::string refused = launch_refusal(grid, block, shared_bytes);
  if (!refused.empty()) {  // as a GPU: nothing runs, and the launch's error is what cudaGetLastError says
    std::fprintf(stderr, "[cuda emulator] launch of %s refused: %s\n", name, refused.c_str());
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  enqueue(stream, [name, grid, block, shared_bytes, kernel = std::move(kernel)] {
    run_grid(name, grid, block, shared_bytes, kernel);
  });
}

}  // namespace awq_edge::cuda_emulator
