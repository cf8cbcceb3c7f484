// cuda_fp16.h (emulator): the fp16 types and conversions cuda/*.cu use, on the host: __half is
// the IEEE binary16 bit pattern, converted exactly (round to nearest even) by awq_edge/fp16.h.
// The packed fp16x2 arithmetic (__hsub2, __hmul2, __hfma2) is not provided: the kernels reach it
// only through fragment_math.h, whose host path computes it (rounded through fp32).
#pragma once

#include <cstdint>

#include "awq_edge/fp16.h"
#include "cuda_runtime.h"

struct __half {
  uint16_t bits;
};
struct __half2 {
  __half x, y;  // x: the low 16 bits of the 32-bit register
};

inline float __half2float(__half h) { return awq_edge::fp16_to_float(h.bits); }
inline __half __float2half_rn(float f) { return __half{awq_edge::float_to_fp16(f)}; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
