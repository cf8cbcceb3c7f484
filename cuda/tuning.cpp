// tuning.cpp: the table of launch configurations (tuning.h).
//
// The entries below are NOT measured yet (measured = false): they follow from each GPU's SM count
// and memory system (warps in flight needed to cover DRAM latency at its bandwidth). Replace an
// entry with the line tools/tune_cuda.py prints on that GPU.
#include "tuning.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace awq_edge::cuda {
namespace {

const TuningEntry kTable[] = {
    // device  cc  SMs  measured  {gemv_max_warps, warps/SM, gemm_warps, attention blocks/SM, gemm_strips,
    //                             gemm_fp16_accumulate}
    // (fp16 accumulation is off until measured: its sums are less precise, and only some GPUs (GeForce
    // Ampere and Ada) run fp16-accumulating mma faster; tools/tune_cuda.py times both.)
    {"Jetson AGX Orin (LPDDR5 ~200 GB/s, 4 MB L2)", 8, 7, 12, 16, false, {8, 24, 2, 4, 4, false}},
    {"Jetson Orin NX / Nano", 8, 7, 1, 11, false, {8, 24, 2, 4, 4, false}},
    {"A100", 8, 0, 100, 128, false, {4, 16, 2, 4, 8, false}},
    {"GA10x (RTX 30, A10, A40)", 8, 6, 1, 128, false, {4, 16, 2, 4, 4, false}},
    {"AD10x (RTX 40, L4, L40)", 8, 9, 1, 160, false, {4, 16, 2, 4, 4, false}},
    {"H100 / H200 / GH200", 9, 0, 100, 160, false, {4, 16, 2, 4, 8, false}},
};

int parse_int(const std::string& field, const std::string& value, int low = 1, int high = 64) {
  char* end = nullptr;
  const long parsed = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || parsed < low || parsed > high) {
    throw std::invalid_argument("[cuda] AWQ_EDGE_CUDA_TUNING: " + field + "=" + value + " is not an integer in " +
                                std::to_string(low) + ".." + std::to_string(high));
  }
  return static_cast<int>(parsed);
}

int power_of_two_at_most(int value, int limit) {
  int p = 1;
  while (p * 2 <= std::min(value, limit)) p *= 2;
  return p;
}

}  // namespace

void apply_tuning_overrides(const std::string& text, KernelConfig& config) {
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.empty()) continue;
    const size_t equals = item.find('=');
    if (equals == std::string::npos) {
      throw std::invalid_argument("[cuda] AWQ_EDGE_CUDA_TUNING: '" + item + "' is not field=value");
    }
    const std::string field = item.substr(0, equals), value = item.substr(equals + 1);
    const bool flag = field == "gemm_staged_always" || field == "gemm_fp16_accumulate" || field == "programmatic_launch";
    const int v = flag ? parse_int(field, value, 0, 1) : parse_int(field, value);
    if (field == "gemv_max_warps") {
      if (v != 1 && v != 2 && v != 4 && v != 8) throw std::invalid_argument("[cuda] AWQ_EDGE_CUDA_TUNING: gemv_max_warps must be 1, 2, 4 or 8");
      config.gemv_max_warps = v;
    } else if (field == "gemv_warps_per_sm") {
      config.gemv_warps_per_sm = v;
    } else if (field == "gemm_warps") {
      if (v > 4) throw std::invalid_argument("[cuda] AWQ_EDGE_CUDA_TUNING: gemm_warps must be 1..4");
      config.gemm_warps = v;
    } else if (field == "attention_blocks_per_sm") {
      config.attention_blocks_per_sm = v;
    } else if (field == "gemm_staged_always") {
      config.gemm_staged_always = v == 1;
    } else if (field == "gemm_fp16_accumulate") {
      config.gemm_fp16_accumulate = v == 1;
    } else if (field == "programmatic_launch") {
      config.programmatic_launch = v == 1;
    } else if (field == "gemm_strips") {
      if (v != 1 && v != 2 && v != 4 && v != 8) throw std::invalid_argument("[cuda] AWQ_EDGE_CUDA_TUNING: gemm_strips must be 1, 2, 4 or 8");
      config.gemm_strips = v;
    } else {
      throw std::invalid_argument("[cuda] AWQ_EDGE_CUDA_TUNING: unknown field '" + field +
                                  "' (gemv_max_warps, gemv_warps_per_sm, gemm_warps, gemm_strips, gemm_fp16_accumulate, "
                                  "gemm_staged_always, attention_blocks_per_sm, programmatic_launch)");
    }
  }
}

KernelConfig tuned_config(int major, int minor, int sms, std::string* source) {
  KernelConfig config;
  std::string from = "generic default (no table entry for sm_" + std::to_string(major) + std::to_string(minor) + ")";
  for (const TuningEntry& entry : kTable) {
    if (entry.major == major && entry.minor == minor && sms >= entry.min_sms && sms <= entry.max_sms) {
      config = entry.config;
      from = std::string("table entry '") + entry.device + "'" + (entry.measured ? " (measured)" : " (not yet measured)");
      break;
    }
  }
  if (const char* text = std::getenv("AWQ_EDGE_CUDA_TUNING"); text != nullptr && *text != '\0') {
    apply_tuning_overrides(text, config);
    from += " + AWQ_EDGE_CUDA_TUNING=" + std::string(text);
  }
  if (source != nullptr) *source = from;
  return config;
}

int gemv_warps(const KernelConfig& config, int64_t strips, int sms) {
  const int64_t wanted = (static_cast<int64_t>(sms) * config.gemv_warps_per_sm + strips - 1) / std::max<int64_t>(strips, 1);
  return power_of_two_at_most(static_cast<int>(std::min<int64_t>(wanted, 8)), config.gemv_max_warps);
}

int gemm_strips_per_block(const KernelConfig& config, int64_t strips, int64_t tokens, int sms) {
  if (config.gemm_strips <= 1) return 1;
  if (config.gemm_staged_always) return config.gemm_strips;
  const int64_t blocks = (strips + config.gemm_strips - 1) / config.gemm_strips * ((tokens + 63) / 64);
  return 2 * blocks >= sms ? config.gemm_strips : 1;
}

int attention_splits(const KernelConfig& config, int64_t tasks, int64_t length, int sms) {
  const int64_t wanted = (static_cast<int64_t>(sms) * config.attention_blocks_per_sm + tasks - 1) / std::max<int64_t>(tasks, 1);
  const int64_t most = std::max<int64_t>(1, length / 64);  // keep at least 64 positions per split
  return static_cast<int>(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(most, 256)));
}

}  // namespace awq_edge::cuda
