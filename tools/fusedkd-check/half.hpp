// half.hpp — float <-> IEEE binary16 (fp16) and bfloat16 conversions, round-to-nearest-even.
//
// The CPU backend has no half types, so the conformance checker and the case generator emulate
// a half-precision run: they round float values to the storage type and back. Plain C++17, no
// intrinsics; NaN stays NaN, overflow goes to infinity, fp16 subnormals are rounded correctly.
#pragma once

#include <cstdint>
#include <cstring>

namespace fusedkd_check {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// float -> fp16 bits, round to nearest, ties to even.
inline uint16_t float_to_half_bits(float f) {
  uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u)  // inf or NaN (NaN stays a quiet NaN)
    return static_cast<uint16_t>(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x477ff000u)  // >= 65520: rounds to infinity (65504 is the largest finite half)
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (x < 0x38800000u) {  // below 2^-14: a half subnormal or zero
    // Adding 0.5f puts the half subnormal's bits at the bottom of the float's mantissa; the FPU
    // does the round-to-nearest-even of the shifted-out bits.
    const float magic = bits_float(126u << 23);  // 0.5f
    const float r = bits_float(x) + magic;
    return static_cast<uint16_t>(sign | (float_bits(r) - float_bits(magic)));
  }
  const uint32_t odd = (x >> 13) & 1u;
  x += 0xfffu + odd;           // round the 13 dropped mantissa bits, ties to even
  x -= (127u - 15u) << 23;     // rebias the exponent
  return static_cast<uint16_t>(sign | (x >> 13));
}

/// fp16 bits -> float (exact).
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);  // +-0
    // subnormal: mant * 2^-24
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    return bits_float(sign | ((127u - 15u - static_cast<uint32_t>(e)) << 23) | (mant << 13));
  }
  return bits_float(sign | ((exp + 127u - 15u) << 23) | (mant << 13));
}

/// float -> bfloat16 bits, round to nearest, ties to even.
inline uint16_t float_to_bf16_bits(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)  // NaN: keep it a quiet NaN
    return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

/// bfloat16 bits -> float (exact).
inline float bf16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

/// The storage types a conformance case can ask for.
enum class DType { kFloat32, kFloat16, kBFloat16 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "?";
}

/// `f` rounded to the nearest value of `d` (ties to even), returned as a float (exact).
inline float round_to(DType d, float f) {
  switch (d) {
    case DType::kFloat32: return f;
    case DType::kFloat16: return half_bits_to_float(float_to_half_bits(f));
    case DType::kBFloat16: return bf16_bits_to_float(float_to_bf16_bits(f));
  }
  return f;
}

}  // namespace fusedkd_check
