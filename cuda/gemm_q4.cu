// gemm_q4.cu: y (m, N) = x (m, K) W^T for q4 weights and any m (prefill), on the tensor cores with
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (fp16 operands, fp32 accumulation).
//
//   grid: (strips of 32 rows, tiles of 64 tokens); block: `warps` warps splitting K like gemv_q4.
//   A warp owns 64 tokens (4 m16 tiles) x 32 rows (4 n8 tiles) = 16 accumulator fragments.
//
//   per 32-column block and lane (q4_layout.h, fragment_math.h):
//     W:  one 16-byte streaming load = word r for n8 tile r; b_registers turns it into the B
//         operands of both k16 tiles, dequantized to fp16 (q - z) * s (exact q - z, one rounding)
//     x:  for each m16 tile, the prepared (unscaled, permuted) 16 bytes of tokens gid and gid + 8
//         are exactly the A operands of both k16 tiles (a_registers)
//     8 mma per m16 tile: 2 k16 tiles x 4 n8 tiles
//
//   then: warps' accumulators summed in shared memory; accumulator i of a lane is token
//   accumulator_token(lane, i), row 8r + accumulator_column(lane, i).
#include "fragment_math.h"
#include "kernels.h"
#include "launch.h"

#include <cuda_fp16.h>
#if defined(AWQ_EDGE_CUDA_EMULATOR)
#include "tensor_core.h"
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the CUDA backend needs compute capability 8.0 or newer (mma.sync m16n8k16 with fp16): set CMAKE_CUDA_ARCHITECTURES to 80 or above"
#endif

namespace awq_edge::cuda {
namespace {

constexpr int kTokenTiles = 4;               // m16 tiles per warp
constexpr int kTokensPerBlock = 16 * kTokenTiles;

__device__ __forceinline__ void mma_m16n8k16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(AWQ_EDGE_CUDA_EMULATOR)
  cuda_emulator::mma_m16n8k16_f32_f16(c, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__global__ void __launch_bounds__(256) gemm_q4_kernel(GroupedWeight w, const uint4* __restrict__ x, int64_t m,
                                                      const float* __restrict__ bias, float* __restrict__ y,
                                                      int64_t y_stride) {
  float* warp_sums = dynamic_shared<float>();  // (warps - 1, 32 lanes, kTokenTiles * 16)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int64_t strip = blockIdx.x, first_token = static_cast<int64_t>(blockIdx.y) * kTokensPerBlock;
  const int blocks = static_cast<int>(w.blocks);
  const uint4* tiles = w.words + strip * w.blocks * 32 + lane;
  const uint2* scales = reinterpret_cast<const uint2*>(w.scales) + strip * w.groups * 8 + gid;
  const uint32_t* zeros = reinterpret_cast<const uint32_t*>(w.zeros) + strip * w.groups * 8 + gid;

  float acc[kTokenTiles][4][4];
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[t][r][i] = 0.0f;

  for (int b = warp; b < blocks; b += warps) {
    const uint4 q = __ldcs(tiles + b * 32);
    const int j = b >> w.group_shift;
    const uint2 s = __ldg(scales + j * 8);
    const cuda_layout::ZeroPairs z = cuda_layout::zero_pairs(__ldg(zeros + j * 8));
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    const uint32_t scale_pair[4] = {(s.x & 0xFFFFu) * 0x00010001u, (s.x >> 16) * 0x00010001u,
                                    (s.y & 0xFFFFu) * 0x00010001u, (s.y >> 16) * 0x00010001u};
    uint32_t b0[4][2], b1[4][2];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      cuda_layout::b_registers(words[r], z, r, scale_pair[r], b0[r], b1[r]);
    }
#pragma unroll
    for (int t = 0; t < kTokenTiles; ++t) {
      const int64_t low = first_token + 16 * t + gid, high = low + 8;
      if (first_token + 16 * t >= m) break;  // the same for the whole warp
      const uint4 zero = make_uint4(0, 0, 0, 0);
      const uint4 xl = low < m ? __ldg(x + (low * blocks + b) * 4 + tig) : zero;
      const uint4 xh = high < m ? __ldg(x + (high * blocks + b) * 4 + tig) : zero;
      const uint32_t x_low[4] = {xl.x, xl.y, xl.z, xl.w}, x_high[4] = {xh.x, xh.y, xh.z, xh.w};
      uint32_t a0[4], a1[4];
      cuda_layout::a_registers(x_low, x_high, a0, a1);
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        mma_m16n8k16(acc[t][r], a0, b0[r]);
        mma_m16n8k16(acc[t][r], a1, b1[r]);
      }
    }
  }

  // Sum the warps' accumulators into warp 0's.
  if (warps > 1) {
    if (warp > 0) {
      float* mine = warp_sums + ((warp - 1) * 32 + lane) * (kTokenTiles * 16);
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int i = 0; i < 4; ++i) mine[(t * 4 + r) * 4 + i] = acc[t][r][i];
    }
    __syncthreads();
    if (warp > 0) return;
    for (int v = 0; v < warps - 1; ++v) {
      const float* theirs = warp_sums + (v * 32 + lane) * (kTokenTiles * 16);
#pragma unroll
      for (int t = 0; t < kTokenTiles; ++t)
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[t][r][i] += theirs[(t * 4 + r) * 4 + i];
    }
  }
#pragma unroll
  for (int t = 0; t < kTokenTiles; ++t) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t token = first_token + 16 * t + cuda_layout::accumulator_token(lane, i);
        const int64_t n = strip * 32 + 8 * r + cuda_layout::accumulator_column(lane, i);
        if (token < m && n < w.rows) y[token * y_stride + n] = acc[t][r][i] + (bias != nullptr ? bias[n] : 0.0f);
      }
    }
  }
}

}  // namespace

void gemm_q4(const GroupedWeight& w, const uint16_t* prepared, int64_t m, const float* bias, const Matrix& y,
             int warps_per_tile, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(w.strips), static_cast<unsigned>((m + kTokensPerBlock - 1) / kTokensPerBlock));
  const size_t shared = static_cast<size_t>(warps_per_tile - 1) * 32 * kTokenTiles * 16 * sizeof(float);
  launch("gemm_q4", gemm_q4_kernel, grid, warps_per_tile * 32, shared, stream, w,
         reinterpret_cast<const uint4*>(prepared), m, bias, y.data, y.stride);
}

}  // namespace awq_edge::cuda
