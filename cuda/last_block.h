// last_block.h: "the last block to finish completes the work", for kernels whose blocks each write
// part of a result that one of them must then combine (the attention's split merge, the gate/up
// kernel's prepared groups), without a second kernel. CUDA's threadFenceReduction pattern:
//
//   every thread: its writes, __threadfence (visible to the whole GPU before the count says so)
//   block barrier; thread 0: atomicAdd(counter, 1); the block that sees blocks - 1 is the last,
//   and sets the counter back to 0 for the next launch (a recorded CUDA graph replays it)
//   block barrier; the last block fences again and reads the others' results through L2 (__ldcg)
#pragma once

namespace awq_edge::cuda {

// Called by every thread of a block after its share is written; true in the last of the `blocks`
// blocks counted on `counter` (zero before the launch, zero again after it).
__device__ __forceinline__ bool last_block_to_finish(unsigned* counter, unsigned blocks) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1u) == blocks - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace awq_edge::cuda
