// tensor_core.h: the emulator's mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, a warp
// collective, with the operand fragments of the PTX ISA (lane = 4 * group + t, t = lane % 4;
// each 32-bit A/B register holds two fp16, the lower column/row in the low half):
//
//   A (16 x 16, row-major)   a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//                            a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, "col")        b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   C, D (16 x 8, fp32)      c[0] = C[g][2t]  c[1] = C[g][2t+1]  c[2] = C[g+8][2t]  c[3] = C[g+8][2t+1]
//
// D = A B + C: the fp16 products are exact in fp32 and summed in fp32 in k order (hardware may
// sum in another order: results agree to fp32 rounding).
//
// mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 (fp16 accumulators): C and D as fp16 pairs,
//                            c[0] = C[g][2t, 2t+1]   c[1] = C[g+8][2t, 2t+1]
// summed as above and rounded to fp16 once (hardware rounds within 2^-10 of the sum's magnitude).
#pragma once

#include <cstdint>

namespace awq_edge::cuda_emulator {

void mma_m16n8k16_f32_f16(float c[4], const uint32_t a[4], const uint32_t b[2]);
void mma_m16n8k16_f16_f16(uint32_t c[2], const uint32_t a[4], const uint32_t b[2]);

}  // namespace awq_edge::cuda_emulator
