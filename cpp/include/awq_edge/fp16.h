// fp16.h: IEEE binary16 <-> binary32 conversion in portable C++ (no F16C, no _Float16), exact in
// both directions for every value (round to nearest even when narrowing). The scalar reference
// paths use it; fast paths use the CPU's conversion instructions and are tested against it.
#pragma once

#include <cstdint>
#include <cstring>

namespace awq_edge {

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  uint32_t bits;
  if (exponent == 0x1F) {                       // inf / nan
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {                   // normal
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {                   // +-0
    bits = sign;
  } else {                                      // subnormal: renormalise
    int shift = 0;
    uint32_t m = mantissa;
    while ((m & 0x400u) == 0) { m <<= 1; ++shift; }
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((m & 0x3FFu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_fp16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits >= 0x7F800000u) {                // inf / nan (keep nan quiet)
    return sign | 0x7C00u | (abs_bits > 0x7F800000u ? 0x200u : 0u);
  }
  if (abs_bits >= 0x477FF000u) return sign | 0x7C00u;  // rounds past 65504: inf
  if (abs_bits < 0x38800000u) {                 // below the smallest normal: subnormal or 0
    if (abs_bits < 0x33000000u) return sign;    // below half the smallest subnormal
    const uint32_t exponent = abs_bits >> 23;
    const uint32_t mantissa = (abs_bits & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - exponent;      // 14..24
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t midpoint = 1u << (shift - 1);
    if (rest > midpoint || (rest == midpoint && (half & 1u))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = ((abs_bits >> 13) - (112u << 10));  // rebias exponent, keep 10 mantissa bits
  const uint32_t rest = abs_bits & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into exponent: fine
  return sign | static_cast<uint16_t>(half);
}

}  // namespace awq_edge
