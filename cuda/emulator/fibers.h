// fibers.h: the emulator's threads: a stack each and cooperative switching between them and the
// scheduler (emulator.cpp). On x86-64 a switch is about 20 instructions (the assembly in
// fibers.cpp saves the callee-saved registers, MXCSR and the x87 control word); elsewhere
// ucontext, which also saves the signal mask (a system call per switch: slower, same behaviour).
// Under ThreadSanitizer each fiber is also a TSan fiber (race_detection.h).
#pragma once

#include <cstddef>
#include <memory>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace awq_edge::cuda_emulator {

class Fiber {
 public:
  // A fiber that will call entry(argument) on its own stack of `stack_bytes` when first resumed.
  // entry must never return: it ends by switching away for good (suspend, never resumed again).
  Fiber(size_t stack_bytes, void (*entry)(void*), void* argument);
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  ~Fiber();

  // Rewinds the fiber to the start of entry (its stack is reused).
  void restart();
  // From the scheduler: run the fiber until it suspends.
  void resume();
  // From inside the fiber: go back to the scheduler that resumed it.
  void suspend();

 private:
  std::unique_ptr<char[]> stack_;
  size_t stack_bytes_;
  void (*entry_)(void*);
  void* argument_;
  void* race_context_;             // the fiber's TSan context (race_detection.h; null without TSan)
  void* resumer_race_context_ = nullptr;  // the context that resumed it, to switch back to
#if defined(__x86_64__)
  void* fiber_sp_ = nullptr;      // the fiber's saved stack pointer while it is suspended
  void* scheduler_sp_ = nullptr;  // the scheduler's while the fiber runs
#else
  ucontext_t fiber_context_{}, scheduler_context_{};
#endif
};

}  // namespace awq_edge::cuda_emulator
