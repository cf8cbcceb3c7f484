// cpu_features.cpp: see cpu_features.h.
#include "cpu_features.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace awq_edge::cpu {

NeonFeatures neon_features_from_hwcap(unsigned long hwcap, unsigned long hwcap2) {
  constexpr unsigned long kHwcapAsimdHp = 1ul << 10;  // HWCAP_ASIMDHP: fp16 vector arithmetic
  constexpr unsigned long kHwcapAsimdDp = 1ul << 20;  // HWCAP_ASIMDDP: SDOT/UDOT
  constexpr unsigned long kHwcap2I8mm = 1ul << 13;    // HWCAP2_I8MM: SMMLA
  NeonFeatures f;
  f.fp16 = (hwcap & kHwcapAsimdHp) != 0;
  f.dotprod = (hwcap & kHwcapAsimdDp) != 0;
  f.i8mm = (hwcap2 & kHwcap2I8mm) != 0;
  return f;
}

NeonFeatures neon_features_from_sysctl(const std::function<bool(const char*)>& has) {
  NeonFeatures f;
  f.fp16 = has("hw.optional.arm.FEAT_FP16");
  f.dotprod = has("hw.optional.arm.FEAT_DotProd");
  f.i8mm = has("hw.optional.arm.FEAT_I8MM");
  return f;
}

namespace {

NeonFeatures detect() {
#if defined(__aarch64__) && defined(__linux__)
  return neon_features_from_hwcap(getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
#elif defined(__aarch64__) && defined(__APPLE__)
  return neon_features_from_sysctl([](const char* name) {
    int value = 0;
    size_t size = sizeof(value);
    return sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
  });
#else
  return NeonFeatures{};
#endif
}

}  // namespace

const NeonFeatures& neon_features() {
  static const NeonFeatures features = detect();
  return features;
}

}  // namespace awq_edge::cpu
