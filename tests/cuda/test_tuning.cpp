// test_tuning.cpp: the CUDA backend's launch-configuration table (cuda/tuning.cpp) on the host:
// entries are found by compute capability and SM count, AWQ_EDGE_CUDA_TUNING overrides parse or
// fail with a message naming the field, and the launch arithmetic stays within its limits.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "tuning.h"

using namespace awq_edge::cuda;

namespace {
int failures = 0;
void expect(bool ok, const std::string& what) {
  if (!ok && ++failures <= 20) std::printf("FAIL %s\n", what.c_str());
}
void expect_error(const std::string& text, const std::string& must_mention) {
  KernelConfig c;
  try {
    apply_tuning_overrides(text, c);
    expect(false, "'" + text + "' should be rejected");
  } catch (const std::invalid_argument& e) {
    expect(std::string(e.what()).find(must_mention) != std::string::npos,
           "error for '" + text + "' mentions '" + must_mention + "': " + e.what());
  }
}
}  // namespace

int main() {
  unsetenv("AWQ_EDGE_CUDA_TUNING");
  std::string source;
  tuned_config(8, 7, 16, &source);
  expect(source.find("AGX Orin") != std::string::npos, "sm_87 with 16 SMs is the AGX Orin entry: " + source);
  tuned_config(8, 7, 8, &source);
  expect(source.find("Orin NX") != std::string::npos, "sm_87 with 8 SMs is the Orin NX entry: " + source);
  const KernelConfig h100 = tuned_config(9, 0, 132, &source);
  expect(source.find("H100") != std::string::npos, "sm_90 with 132 SMs is the H100 entry: " + source);
  // the table's columns land in the fields its comment names
  expect(h100.gemv_max_warps == 4 && h100.gemv_warps_per_sm == 16 && h100.gemm_warps == 2 &&
             h100.attention_blocks_per_sm == 4 && h100.gemm_strips == 8 && !h100.gemm_staged_always,
         "the H100 entry's fields");
  expect(tuned_config(8, 7, 16, nullptr).gemm_strips == 4, "the AGX Orin entry stages 4 strips per block");
  tuned_config(12, 0, 84, &source);
  expect(source.find("generic default") != std::string::npos, "an unknown GPU gets the default: " + source);

  KernelConfig c;
  apply_tuning_overrides("gemv_max_warps=8,gemm_warps=1,attention_blocks_per_sm=2,gemv_warps_per_sm=32", c);
  expect(c.gemv_max_warps == 8 && c.gemm_warps == 1 && c.attention_blocks_per_sm == 2 && c.gemv_warps_per_sm == 32,
         "overrides are applied");
  expect_error("gemv_max_warps=3", "gemv_max_warps");
  expect_error("gemm_warps=5", "gemm_warps");
  expect_error("gemm_strips=3", "gemm_strips");
  apply_tuning_overrides("gemm_strips=8", c);
  expect(c.gemm_strips == 8, "gemm_strips is applied");
  expect(!c.gemm_fp16_accumulate && !tuned_config(8, 7, 16, nullptr).gemm_fp16_accumulate,
         "fp16 accumulation is off unless asked for (no entry has measured it)");
  apply_tuning_overrides("gemm_fp16_accumulate=1", c);
  expect(c.gemm_fp16_accumulate, "gemm_fp16_accumulate is applied");
  expect_error("gemm_fp16_accumulate=2", "gemm_fp16_accumulate=2 is not an integer in 0..1");
  expect(!c.programmatic_launch && !tuned_config(9, 0, 132, nullptr).programmatic_launch,
         "programmatic dependent launches are off unless asked for (not yet run on a GPU)");
  apply_tuning_overrides("programmatic_launch=1", c);
  expect(c.programmatic_launch, "programmatic_launch is applied");
  expect_error("programmatic_launch=2", "programmatic_launch=2 is not an integer in 0..1");
  expect_error("unknown=1", "unknown");
  expect_error("gemv_max_warps", "field=value");
  expect_error("gemm_warps=x", "gemm_warps=x");

  setenv("AWQ_EDGE_CUDA_TUNING", "gemm_warps=3", 1);
  const KernelConfig overridden = tuned_config(9, 0, 132, &source);
  expect(overridden.gemm_warps == 3 && source.find("AWQ_EDGE_CUDA_TUNING") != std::string::npos,
         "the environment overrides the table: " + source);
  unsetenv("AWQ_EDGE_CUDA_TUNING");

  KernelConfig d;  // gemv_max_warps 4, 16 warps per SM
  expect(gemv_warps(d, 128, 132) == 4, "4096 rows on 132 SMs: as many warps as allowed");
  expect(gemv_warps(d, 4096, 132) == 1, "131072 rows: one warp per strip is plenty");
  for (int64_t strips : {1, 3, 32, 128, 448, 1000}) {
    const int w = gemv_warps(d, strips, 16);
    expect(w >= 1 && w <= d.gemv_max_warps && (w & (w - 1)) == 0, "gemv warps are a power of two within the limit");
  }
  KernelConfig staged;
  staged.gemm_strips = 8;
  expect(gemm_strips_per_block(staged, 128, 512, 132) == 8, "4096 rows x 512 tokens on an H100: 128 blocks, staged");
  expect(gemm_strips_per_block(staged, 128, 512, 16) == 8, "4096 rows x 512 tokens on 16 SMs: staged");
  expect(gemm_strips_per_block(staged, 18, 64, 16) == 1, "576 rows x 64 tokens: 3 blocks for 16 SMs: split K");
  apply_tuning_overrides("gemm_staged_always=1", staged);
  expect(gemm_strips_per_block(staged, 18, 64, 16) == 8, "gemm_staged_always=1: staged even for 3 blocks");
  expect_error("gemm_staged_always=2", "0..1");
  staged.gemm_strips = 1;
  expect(gemm_strips_per_block(staged, 4096, 4096, 16) == 1, "gemm_strips=1: always split K");
  expect(attention_splits(d, 32, 128, 132) == 2, "128 positions: at most 2 splits of 64");
  expect(attention_splits(d, 32, 4096, 132) == 17, "4096 positions, 32 tasks on 132 SMs: 17 splits");
  expect(attention_splits(d, 4096, 4096, 132) == 1, "many tasks: no split");
  expect(attention_splits(d, 1, 1, 16) == 1, "one position: one split");
  if (failures == 0) std::printf("all checks passed\n");
  return failures == 0 ? 0 : 1;
}
