// race_detection.h: ThreadSanitizer's view of the emulator, so that a build with -fsanitize=thread
// reports what compute-sanitizer's racecheck reports on a GPU: two threads of one block touching the
// same bytes (shared or global memory), at least one of them writing, with nothing that orders
// them. Every call is empty in other builds.
//
// Every emulated thread is a TSan fiber (fibers.cpp), switched to without synchronisation, so that
// TSan orders two threads' accesses only where CUDA orders them:
//
//   block start    the scheduler's earlier work (the launch's arguments, the dynamic shared memory
//                  fill, earlier kernels and copies) happens before every thread of the block
//   __syncthreads  every thread's accesses before barrier k happen before every thread's after it
//                  (one key per barrier parity: a thread that runs on to barrier k + 1 cannot
//                  release into the key that a slower thread has yet to acquire for barrier k)
//   block end      every thread's accesses happen before the scheduler's next step (the next block,
//                  the next kernel, the host)
//
// Warp collectives (shuffles, mma.sync) order no memory: lanes that pass data through shared memory
// need a barrier, as on a GPU with independent thread scheduling. The blocks of a grid run one after
// another and are ordered by the chain above, so races between blocks are not reported here (nor by
// racecheck, which looks inside a block); a kernel that relies on block order shows in the reverse
// order run (AWQ_EDGE_CUDA_EMULATOR_ORDER) instead. The emulator's own bookkeeping on a fiber
// (thread states, shuffle slots) is hidden from TSan with Unobserved.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define AWQ_EDGE_EMULATOR_RACE_DETECTION 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AWQ_EDGE_EMULATOR_RACE_DETECTION 1
#endif
#endif

#if defined(AWQ_EDGE_EMULATOR_RACE_DETECTION)
#include <sanitizer/tsan_interface.h>
extern "C" {  // in the TSan runtime, not in its header: ignore this thread's accesses until the end
void __tsan_ignore_thread_begin();
void __tsan_ignore_thread_end();
}
#endif

namespace awq_edge::cuda_emulator::race_detection {

#if defined(AWQ_EDGE_EMULATOR_RACE_DETECTION)
constexpr bool enabled = true;
inline void* current_context() { return __tsan_get_current_fiber(); }
inline void* new_context() { return __tsan_create_fiber(0); }
inline void destroy_context(void* context) { __tsan_destroy_fiber(context); }
// Immediately before the stack switch to the fiber whose context this is.
inline void switch_to(void* context) { __tsan_switch_to_fiber(context, __tsan_switch_to_fiber_no_sync); }
inline void release(const void* key) { __tsan_release(const_cast<void*>(key)); }
inline void acquire(const void* key) { __tsan_acquire(const_cast<void*>(key)); }
struct Unobserved {
  Unobserved() { __tsan_ignore_thread_begin(); }
  ~Unobserved() { __tsan_ignore_thread_end(); }
  Unobserved(const Unobserved&) = delete;
  Unobserved& operator=(const Unobserved&) = delete;
};
#else
constexpr bool enabled = false;
inline void* current_context() { return nullptr; }
inline void* new_context() { return nullptr; }
inline void destroy_context(void*) {}
inline void switch_to(void*) {}
inline void release(const void*) {}
inline void acquire(const void*) {}
struct Unobserved {};
#endif

}  // namespace awq_edge::cuda_emulator::race_detection
