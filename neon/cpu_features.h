// cpu_features.h: which optional aarch64 extensions the NEON kernels may use on this CPU.
//
// The mapping from what the operating system reports to the extensions is plain code, testable
// on any machine (tests/native/test_cpu_features.cpp runs it on the build host); only
// detect_neon_features() asks the system: getauxval(AT_HWCAP, AT_HWCAP2) on Linux,
// sysctlbyname("hw.optional.arm.FEAT_*") on macOS, nothing elsewhere (no extension assumed).
#pragma once

#include <functional>

namespace awq_edge::cpu {

struct NeonFeatures {
  bool fp16 = false;     // FEAT_FP16: fp16 vector arithmetic (FMLA on 8 halves)
  bool dotprod = false;  // FEAT_DotProd: SDOT / UDOT
  bool i8mm = false;     // FEAT_I8MM: SMMLA
};

// Linux: the AT_HWCAP and AT_HWCAP2 words of the auxiliary vector (arm64 bit numbering).
NeonFeatures neon_features_from_hwcap(unsigned long hwcap, unsigned long hwcap2);

// macOS: `has(name)` says whether sysctl `name` exists and is nonzero.
NeonFeatures neon_features_from_sysctl(const std::function<bool(const char*)>& has);

// This CPU's, asked once (on aarch64 Linux or macOS; elsewhere none).
const NeonFeatures& neon_features();

}  // namespace awq_edge::cpu
