// strip_pointers.h: where a lane of the q4 kernels finds its part of a strip of a GroupedWeight
// (kernels.h, q4_layout.h), as base pointers that later loads offset with 32-bit indices.
//
//   strip_pointers(w, strip, lane)   tile of block b:          tiles + 32 b   (16 bytes, uint4)
//                                    scales of group j:        scales + 8 j   (4 rows' fp16, uint2)
//                                    zero points of group j:   zeros + 8 j    (4 rows' bytes, uint32)
//   address_base(p)                  p itself, hidden from the compiler's index arithmetic
//
// Why address_base: without it nvcc folds the 64-bit arithmetic that made a base (the strip's index
// times its stride) into every later address and redoes it per load, five or six instructions
// instead of one IMAD.WIDE (tools/count_cuda_instructions.py counts the decode loop).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels.h"

namespace awq_edge::cuda {

template <typename T>
__device__ __forceinline__ const T* address_base(const T* p) {
#if defined(__CUDA_ARCH__)
  asm("" : "+l"(p));
#endif
  return p;
}

struct StripPointers {
  const uint4* tiles;
  const uint2* scales;
  const uint32_t* zeros;
};

__device__ __forceinline__ StripPointers strip_pointers(const GroupedWeight& w, int64_t strip, int lane) {
  const int64_t row_groups = strip * w.groups * 8 + (lane >> 2);  // lane gid's 4 rows in group 0
  return {address_base(w.words + strip * w.blocks * 32 + lane),
          address_base(reinterpret_cast<const uint2*>(w.scales) + row_groups),
          address_base(reinterpret_cast<const uint32_t*>(w.zeros) + row_groups)};
}

}  // namespace awq_edge::cuda
