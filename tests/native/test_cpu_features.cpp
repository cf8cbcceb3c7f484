// test_cpu_features.cpp: the NEON backend's feature detection (neon/cpu_features.cpp) on the build
// host: the Linux hwcap bits and the macOS sysctl names map to the right extensions, each on its
// own and among unrelated bits; off aarch64 nothing is detected. (On aarch64 the detection itself
// runs under qemu's CPU models in test_neon_under_qemu.py.)
#include <cstdio>
#include <set>
#include <string>

#include "cpu_features.h"

using awq_edge::cpu::NeonFeatures;

namespace {
int failures = 0;
void expect(const NeonFeatures& got, bool fp16, bool dotprod, bool i8mm, const char* what) {
  if (got.fp16 != fp16 || got.dotprod != dotprod || got.i8mm != i8mm) {
    ++failures;
    std::printf("FAIL %s: fp16 %d dotprod %d i8mm %d, want %d %d %d\n", what, got.fp16, got.dotprod, got.i8mm, fp16,
                dotprod, i8mm);
  }
}
}  // namespace

int main() {
  using awq_edge::cpu::neon_features_from_hwcap;
  using awq_edge::cpu::neon_features_from_sysctl;
  const unsigned long asimdhp = 1ul << 10, asimddp = 1ul << 20, i8mm2 = 1ul << 13;
  const unsigned long noise = (1ul << 0) | (1ul << 1) | (1ul << 9) | (1ul << 11) | (1ul << 21);  // fp, asimd, fphp, cpuid, sha3
  expect(neon_features_from_hwcap(0, 0), false, false, false, "no hwcaps");
  expect(neon_features_from_hwcap(noise, ~i8mm2), false, false, false, "unrelated bits only");
  expect(neon_features_from_hwcap(noise | asimdhp, 0), true, false, false, "asimdhp");
  expect(neon_features_from_hwcap(noise | asimddp, 0), false, true, false, "asimddp");
  expect(neon_features_from_hwcap(noise, i8mm2), false, false, true, "i8mm (hwcap2)");
  expect(neon_features_from_hwcap(noise | asimdhp | asimddp, i8mm2), true, true, true, "all");
  expect(neon_features_from_hwcap(i8mm2, 0), false, false, false, "the i8mm bit in the wrong word");

  const std::set<std::string> m1 = {"hw.optional.arm.FEAT_FP16", "hw.optional.arm.FEAT_DotProd"};
  const std::set<std::string> m2 = {"hw.optional.arm.FEAT_FP16", "hw.optional.arm.FEAT_DotProd",
                                    "hw.optional.arm.FEAT_I8MM"};
  auto lookup = [](const std::set<std::string>& present) {
    return [&present](const char* name) { return present.count(name) > 0; };
  };
  expect(neon_features_from_sysctl(lookup({})), false, false, false, "sysctl: none");
  expect(neon_features_from_sysctl(lookup(m1)), true, true, false, "sysctl: an M1 (FP16, DotProd)");
  expect(neon_features_from_sysctl(lookup(m2)), true, true, true, "sysctl: an M2 (and I8MM)");
#if !defined(__aarch64__)
  expect(awq_edge::cpu::neon_features(), false, false, false, "off aarch64");
#endif
  if (failures == 0) std::printf("all checks passed\n");
  return failures == 0 ? 0 : 1;
}
