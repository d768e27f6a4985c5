#pragma once
// The small floating-point formats of current GPUs (OCP Microscaling v1.0, NVIDIA NVFP4), as
// element values and as the bytes files store:
//   E2M1 (FP4): sign, 2 exponent bits, 1 mantissa bit: magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6};
//               a code is sign << 3 | index into those magnitudes (what auto-round,
//               compressed-tensors and ggml's MXFP4 all store).
//   E4M3 ("float8_e4m3fn"): sign, 4 exponent bits (bias 7), 3 mantissa bits; subnormals down to
//               2^-9, largest 448, no infinities (0x7f / 0xff are NaN).
//   E8M0:       a power of two 2^(byte - 127), MX's shared group scale (255 is NaN).
// Rounding is to nearest, ties to even, as torch's float8 cast and the reference's element
// rounding (auto_round/data_type/mxfp.py quant_element, nvfp.py cast_to_fp4) round.
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../core/config.hpp"

namespace autoround::minifloat {

inline constexpr float e2m1_max = 6.0f;
inline constexpr float e4m3_max = 448.0f;
inline constexpr std::array<float, 8> e2m1_magnitudes{0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

/// The value of a 4-bit E2M1 code.
inline float e2m1_value(std::uint8_t code) {
  const float m = e2m1_magnitudes[code & 7u];
  return (code & 8u) ? -m : m;
}

/// The code of a value on the E2M1 grid (an element already rounded, divided by its scale). The
/// sign bit is kept, so a negative value that rounded to zero is code 8 (-0), as the reference's
/// packer and compressed-tensors write it. Host and device.
AUTOROUND_HOST_DEVICE inline std::uint8_t e2m1_code(float x) {
  constexpr float magnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float a = fabsf(x);
  std::uint8_t best = 0;
  float error = fabsf(a - magnitudes[0]);
  for (std::uint8_t i = 1; i < 8; ++i) {
    const float d = fabsf(a - magnitudes[i]);
    if (d < error) error = d, best = i;
  }
  return static_cast<std::uint8_t>(best | (copysignf(1.0f, x) < 0.0f ? 8u : 0u));
}

/// 2^e for a normal float's exponent (-126 <= e <= 127): ldexpf(1, e), whose bits the host
/// writes itself (ldexpf is a library call, and this sits in the quantizers' per-element loops).
AUTOROUND_HOST_DEVICE inline float pow2(int e) {
#if defined(__CUDA_ARCH__)
  return ldexpf(1.0f, e);
#else
  return std::bit_cast<float>(static_cast<std::uint32_t>(e + 127) << 23);
#endif
}

/// frexpf's exponent of a positive normal float a (a = m * 2^e, m in [0.5, 1)), from its bits.
AUTOROUND_HOST_DEVICE inline int frexp_exponent(float a) {
#if defined(__CUDA_ARCH__)
  int e = 0;
  frexpf(a, &e);
  return e;
#else
  return static_cast<int>(std::bit_cast<std::uint32_t>(a) >> 23) - 126;
#endif
}

/// x rounded to the nearest E4M3 value, ties to even, saturating at ±448 (torch's cast does so
/// for the values the reference passes it: every caller clamps to ±448 first). Host and device
/// (the CUDA kernels' activation and weight quantization): exact operations only. (The bit-level
/// pow2 / frexp_exponent equal ldexpf / frexpf on every float: checked exhaustively, all 2^32.)
AUTOROUND_HOST_DEVICE inline float e4m3_round(float x) {
  if (x != x) return x;  // NaN
  const float a = fabsf(x);
  float q;
  if (a < 0x1p-6f) {  // subnormal: a multiple of 2^-9
    q = rintf(a * 512.0f) / 512.0f;
  } else if (!(a < 0x1p100f)) {  // far above 448 (or infinite): saturates below
    q = a;
  } else {  // a in [2^(e-1), 2^e): steps of 2^(e-4); division and product by powers of two are exact
    const float step = pow2(frexp_exponent(a) - 4);
    q = rintf(a / step) * step;
  }
  return copysignf(fminf(q, e4m3_max), x);
}

/// The byte of a value on the E4M3 grid. Host and device.
AUTOROUND_HOST_DEVICE inline std::uint8_t e4m3_code(float q) {
  const std::uint8_t sign = copysignf(1.0f, q) < 0.0f ? 0x80u : 0u;
  const float a = fabsf(q);
  if (q != q) return static_cast<std::uint8_t>(sign | 0x7fu);
  if (a < 0x1p-6f) return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(a * 512.0f));
  int e = 0;
  const float m = frexpf(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const auto mantissa = static_cast<unsigned>(m * 16.0f) - 8u;
  return static_cast<std::uint8_t>(sign | static_cast<unsigned>(e - 1 + 7) << 3 | mantissa);
}

/// The value of an E4M3 byte.
inline float e4m3_value(std::uint8_t code) {
  const unsigned exponent = (code >> 3) & 15u, mantissa = code & 7u;
  float a;
  if (exponent == 15 && mantissa == 7) a = std::numeric_limits<float>::quiet_NaN();
  else if (exponent == 0) a = std::ldexp(static_cast<float>(mantissa), -9);
  else a = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, static_cast<int>(exponent) - 7);
  return (code & 0x80u) ? -a : a;
}

/// The E8M0 byte of a power of two 2^E, E in [-127, 127] (2^-127 is a float subnormal).
inline std::uint8_t e8m0_code(float power_of_two) { return static_cast<std::uint8_t>(std::ilogb(power_of_two) + 127); }
inline float e8m0_value(std::uint8_t code) { return std::ldexp(1.0f, static_cast<int>(code) - 127); }

}  // namespace autoround::minifloat
