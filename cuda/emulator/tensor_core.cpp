// tensor_core.cpp: see tensor_core.h.
#include "tensor_core.h"

#include "awq_edge/fp16.h"
#include "emulator.h"

namespace awq_edge::cuda_emulator {
namespace {

struct Fragments {
  uint32_t a[4], b[2];
};

float low(uint32_t pair) { return fp16_to_float(static_cast<uint16_t>(pair & 0xFFFFu)); }
float high(uint32_t pair) { return fp16_to_float(static_cast<uint16_t>(pair >> 16)); }

// A[row][k] from the fragments of all 32 lanes.
float a_element(const Fragments* lanes, int row, int k) {
  const int t = (k % 8) / 2, lane = 4 * (row % 8) + t;
  const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
  const uint32_t pair = lanes[lane].a[reg];
  return k % 2 == 0 ? low(pair) : high(pair);
}

// B[k][column].
float b_element(const Fragments* lanes, int k, int column) {
  const int t = (k % 8) / 2, lane = 4 * column + t;
  const uint32_t pair = lanes[lane].b[k >= 8 ? 1 : 0];
  return k % 2 == 0 ? low(pair) : high(pair);
}

}  // namespace

void mma_m16n8k16_f16_f16(uint32_t c[2], const uint32_t a[4], const uint32_t b[2]) {
  float sums[4] = {low(c[0]), high(c[0]), low(c[1]), high(c[1])};
  mma_m16n8k16_f32_f16(sums, a, b);
  for (int h = 0; h < 2; ++h) {
    c[h] = static_cast<uint32_t>(float_to_fp16(sums[2 * h])) | (static_cast<uint32_t>(float_to_fp16(sums[2 * h + 1])) << 16);
  }
}

void mma_m16n8k16_f32_f16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  Fragments mine{}, all[kWarpSize];
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
  mine.b[0] = b[0];
  mine.b[1] = b[1];
  warp_exchange("mma.sync.m16n8k16", &mine, sizeof mine, all);
  const int lane = static_cast<int>(lane_index()), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), column = 2 * t + i % 2;
    float sum = c[i];
    for (int k = 0; k < 16; ++k) sum += a_element(all, row, k) * b_element(all, k, column);
    c[i] = sum;
  }
}

}  // namespace awq_edge::cuda_emulator
