// fibers.cpp: see fibers.h.
//
// x86-64 (System V): awq_edge_fiber_switch(save, load) pushes the callee-saved registers and a
// word holding MXCSR and the x87 control word, stores the stack pointer in *save, loads `load`
// and pops the same from there. A new fiber's stack is laid out as if it had been switched away
// from just before its first instruction (addresses downward from the aligned top T):
//
//   T-24  return address: awq_edge_fiber_start          (after `ret`, rsp = T-16: 16-byte aligned,
//   T-32  rbp = 0                                        so its `call` enters entry as the ABI wants)
//   T-40  rbx = 0
//   T-48  r12 = argument     awq_edge_fiber_start: rdi = r12; call *r13; ud2
//   T-56  r13 = entry
//   T-64  r14 = 0
//   T-72  r15 = 0
//   T-80  MXCSR 0x1F80 (bytes 0..3), x87 control word 0x037F (bytes 4..5)   <- saved stack pointer
#include "fibers.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "race_detection.h"

namespace awq_edge::cuda_emulator {

#if defined(__x86_64__)

extern "C" void awq_edge_fiber_switch(void** save, void* load);
extern "C" void awq_edge_fiber_start();

asm(R"(
  .text
  .globl awq_edge_fiber_switch
  .type awq_edge_fiber_switch, @function
awq_edge_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size awq_edge_fiber_switch, .-awq_edge_fiber_switch

  .globl awq_edge_fiber_start
  .type awq_edge_fiber_start, @function
awq_edge_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size awq_edge_fiber_start, .-awq_edge_fiber_start
  .section .note.GNU-stack,"",@progbits
  .text
)");

Fiber::Fiber(size_t stack_bytes, void (*entry)(void*), void* argument)
    : stack_(new char[stack_bytes]), stack_bytes_(stack_bytes), entry_(entry), argument_(argument),
      race_context_(race_detection::new_context()) {
  restart();
}

void Fiber::restart() {
  race_detection::Unobserved unobserved;  // the scheduler writing the stack that the fiber will use
  const uintptr_t top = (reinterpret_cast<uintptr_t>(stack_.get()) + stack_bytes_) & ~uintptr_t{15};
  auto slot = [top](int offset) { return reinterpret_cast<uint64_t*>(top - static_cast<uintptr_t>(offset)); };
  *slot(24) = reinterpret_cast<uint64_t>(&awq_edge_fiber_start);
  *slot(32) = 0;                                       // rbp
  *slot(40) = 0;                                       // rbx
  *slot(48) = reinterpret_cast<uint64_t>(argument_);   // r12
  *slot(56) = reinterpret_cast<uint64_t>(entry_);      // r13
  *slot(64) = 0;                                       // r14
  *slot(72) = 0;                                       // r15
  const uint32_t mxcsr = 0x1F80u;                      // all exceptions masked, round to nearest
  const uint16_t x87_control = 0x037Fu;
  std::memcpy(slot(80), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(slot(80)) + 4, &x87_control, 2);
  fiber_sp_ = slot(80);
}

// (The stack pointers are read before TSan is told of the switch, as the side that is running.)
void Fiber::resume() {
  void* const load = fiber_sp_;
  resumer_race_context_ = race_detection::current_context();
  race_detection::switch_to(race_context_);
  awq_edge_fiber_switch(&scheduler_sp_, load);
}
void Fiber::suspend() {
  void* load = nullptr;
  void* back = nullptr;
  {
    race_detection::Unobserved unobserved;  // the scheduler's fields, and the fiber's last accesses
    load = scheduler_sp_;
    back = resumer_race_context_;
  }
  race_detection::switch_to(back);
  awq_edge_fiber_switch(&fiber_sp_, load);
}

#else  // ucontext

namespace {
void start_trampoline(unsigned high, unsigned low) {
  auto* fiber = reinterpret_cast<void**>((static_cast<uintptr_t>(high) << 32) | low);
  reinterpret_cast<void (*)(void*)>(fiber[0])(fiber[1]);
}
}  // namespace

Fiber::Fiber(size_t stack_bytes, void (*entry)(void*), void* argument)
    : stack_(new char[stack_bytes]), stack_bytes_(stack_bytes), entry_(entry), argument_(argument),
      race_context_(race_detection::new_context()) {
  restart();
}

void Fiber::restart() {
  race_detection::Unobserved unobserved;
  if (getcontext(&fiber_context_) != 0) throw std::runtime_error("[cuda emulator] getcontext failed");
  // the entry and its argument at the bottom of the stack, for the trampoline
  void** pair = reinterpret_cast<void**>(stack_.get());
  pair[0] = reinterpret_cast<void*>(entry_);
  pair[1] = argument_;
  fiber_context_.uc_stack.ss_sp = stack_.get() + 2 * sizeof(void*);
  fiber_context_.uc_stack.ss_size = stack_bytes_ - 2 * sizeof(void*);
  fiber_context_.uc_link = nullptr;
  const uintptr_t address = reinterpret_cast<uintptr_t>(pair);
  makecontext(&fiber_context_, reinterpret_cast<void (*)()>(&start_trampoline), 2,
              static_cast<unsigned>(address >> 32), static_cast<unsigned>(address & 0xFFFFFFFFu));
}

void Fiber::resume() {
  resumer_race_context_ = race_detection::current_context();
  race_detection::switch_to(race_context_);
  swapcontext(&scheduler_context_, &fiber_context_);
}
void Fiber::suspend() {
  void* back = nullptr;
  {
    race_detection::Unobserved unobserved;
    back = resumer_race_context_;
  }
  race_detection::switch_to(back);
  swapcontext(&fiber_context_, &scheduler_context_);
}

#endif

Fiber::~Fiber() {
  if (race_context_ != nullptr) race_detection::destroy_context(race_context_);
}

}  // namespace awq_edge::cuda_emulator
