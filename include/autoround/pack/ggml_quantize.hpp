#pragma once
// ggml block quantization of float weights (the reference algorithms of llama.cpp's
// ggml-quants.c, quantize_row_*_ref, without an importance matrix), and the encoding of
// AutoRound-tuned integer weights into the ggml blocks whose grid matches them.
//
// Byte-exactness: these are heuristics whose result depends on every float operation, so each
// is written in the order ggml evaluates it and must be compiled without FMA contraction
// (the autoround CMake target adds -ffp-contract=off). Rounding: ggml's nearest_int is round
// half to even (the 1.5 * 2^23 trick), Q8_0 uses roundf (half away from zero), Q4_0/Q4_1
// truncate x + 0.5. Tests compare against blocks written by llama.cpp itself.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/fp16.hpp"
#include "../format/ggml_blocks.hpp"
#include "int_weight_view.hpp"

namespace autoround::ggml {

namespace detail {

inline int nearest_int(float f) {
  const float v = f + 12582912.0f;
  std::int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

inline float fp16_round_trip(float x) { return half_bits_to_float(float_to_half_bits(x)); }

constexpr float group_max_eps = 1e-15f;

/// Symmetric levels -nmax..nmax-1 with a weighted least-squares scale (weights x^2), trying 18
/// scales around nmax / max; L receives level + nmax. Returns the scale.
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < group_max_eps) {
    std::fill(L, L + n, std::int8_t{0});
    return 0.f;
  }
  const auto level = [&](float iscale, int i) { return std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))); };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = level(iscale, i);
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = level(iscale, i);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(nmax + level(iscale, i));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// Q3_K's sub-block fit: levels -nmax..nmax-1, then up to five passes of moving single weights
/// to the level that most improves the weighted (x^2) least-squares fit. L receives level + nmax.
inline float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < group_max_eps) {
    std::fill(L, L + n, std::int8_t{0});
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = static_cast<std::int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<std::int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/// Asymmetric levels 0..nmax with scale and min (min <= 0) fitted by weighted least squares over
/// nstep+1 candidate scales. Returns the scale; `neg_min` receives -min.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L,
                              float& neg_min, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, std::uint8_t{0});
    neg_min = -min;
    return 0.f;
  }
  const auto error_of = [&](float d) { return use_mad ? std::fabs(d) : d * d; };
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    best_error += weights[i] * error_of(scale * static_cast<float>(L[i]) + min - x[i]);
  }
  std::uint8_t Laux[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i], fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) cur_error += weights[i] * error_of(this_scale * static_cast<float>(Laux[i]) + this_min - x[i]);
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  neg_min = -min;
  return scale;
}

/// Four 2-bit values per byte: weight 128h + 32s + l goes to bits 2s of byte 32h + l.
inline void pack_2bit(const std::uint8_t* L, std::uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/// Q4_K/Q5_K: 6-bit scale and min of the 8 sub-blocks into 12 bytes (inverse of scale_min_k4).
inline void pack_scale_min_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* scales) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] |= static_cast<std::uint8_t>((ls[j] >> 4) << 6);
      scales[j] |= static_cast<std::uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

/// Q3_K: the 6-bit code l (scale + 32) of sub-block j: low nibbles in bytes 0..7, top 2 bits in 8..11.
inline void pack_q3_k_scale(int j, int l, std::uint8_t* scales) {
  if (j < 8) scales[j] = static_cast<std::uint8_t>(l & 0xF);
  else scales[j - 8] |= static_cast<std::uint8_t>((l & 0xF) << 4);
  l >>= 4;
  scales[j % 4 + 8] |= static_cast<std::uint8_t>(l << (2 * (j / 4)));
}
/// Q3_K: levels 0..7 (value + 4): bit 2 into hmask (weight j: bit j/32 of byte j%32), the rest as 2-bit.
template <class Level>
void pack_q3_k_levels(const Level* L, std::uint8_t* hmask, std::uint8_t* qs) {
  std::uint8_t low[QK_K];
  for (int j = 0; j < QK_K; ++j) {
    int l = L[j];
    if (l > 3) {
      hmask[j % 32] |= static_cast<std::uint8_t>(1 << (j / 32));
      l -= 4;
    }
    low[j] = static_cast<std::uint8_t>(l);
  }
  pack_2bit(low, qs);
}
/// Q4_K / Q5_K: levels 0..Nmax, weight 64h+l in the low nibble of qs[32h+l], 64h+32+l in its
/// high nibble; Q5_K's bit 4 of weight i in bit i/32 of qh[i%32].
template <int Nmax, class Block>
void pack_q45_k_levels(const std::uint8_t* L, Block& y) {
  for (int j = 0; j < QK_K; j += 64)
    for (int l = 0; l < 32; ++l) {
      const int l1 = L[j + l], l2 = L[j + l + 32];
      if constexpr (Nmax == 31) y.qh[l] |= static_cast<std::uint8_t>(((l1 >> 4) << (j / 32)) | ((l2 >> 4) << (j / 32 + 1)));
      y.qs[j / 2 + l] = static_cast<std::uint8_t>((l1 & 0xF) | ((l2 & 0xF) << 4));
    }
}
/// Q6_K: levels 0..63 (value + 32): low nibbles in ql, top 2 bits in qh.
template <class Level>
void pack_q6_k_levels(const Level* L, BlockQ6_K& y) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l) {
      const auto q = [&](int k) { return static_cast<std::uint8_t>(L[j + l + 32 * k]); };
      y.ql[j / 2 + l] = static_cast<std::uint8_t>((q(0) & 0xF) | ((q(2) & 0xF) << 4));
      y.ql[j / 2 + l + 32] = static_cast<std::uint8_t>((q(1) & 0xF) | ((q(3) & 0xF) << 4));
      y.qh[j / 4 + l] = static_cast<std::uint8_t>((q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6));
    }
}

/// The value of largest magnitude in a 32-weight block (the first one on ties), sign kept.
inline float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
  return max;
}
inline void min_max(const float* x, float& min, float& max) {
  min = x[0];
  max = x[0];
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
}

inline BlockQ4_0 quantize_q4_0(const float* x) {
  const float max = signed_absmax(x);
  const float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
  BlockQ4_0 y{};
  y.d = float_to_half_bits(d);
  const auto q = [&](float v) { return static_cast<std::uint8_t>(std::min(15, static_cast<int>(static_cast<std::int8_t>(v * id + 8.5f)))); };
  for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
  return y;
}

inline BlockQ4_1 quantize_q4_1(const float* x) {
  float min, max;
  min_max(x, min, max);
  const float d = (max - min) / 15, id = d != 0 ? 1.0f / d : 0.0f;
  BlockQ4_1 y{};
  y.d = float_to_half_bits(d);
  y.m = float_to_half_bits(min);
  const auto q = [&](float v) { return static_cast<std::uint8_t>(std::min(15, static_cast<int>(static_cast<std::int8_t>((v - min) * id + 0.5f)))); };
  for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
  return y;
}

inline BlockQ5_0 quantize_q5_0(const float* x) {
  const float max = signed_absmax(x);
  const float d = max / -16, id = d != 0 ? 1.0f / d : 0.0f;
  BlockQ5_0 y{};
  y.d = float_to_half_bits(d);
  std::uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(31, static_cast<int>(static_cast<std::int8_t>(x[j] * id + 16.5f)));
    const int hi = std::min(31, static_cast<int>(static_cast<std::int8_t>(x[j + 16] * id + 16.5f)));
    y.qs[j] = static_cast<std::uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
    qh |= static_cast<std::uint32_t>((lo & 0x10) >> 4) << j;
    qh |= static_cast<std::uint32_t>((hi & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(y.qh, &qh, 4);
  return y;
}

inline BlockQ5_1 quantize_q5_1(const float* x) {
  float min, max;
  min_max(x, min, max);
  const float d = (max - min) / 31, id = d != 0 ? 1.0f / d : 0.0f;
  BlockQ5_1 y{};
  y.d = float_to_half_bits(d);
  y.m = float_to_half_bits(min);
  std::uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = static_cast<std::uint8_t>((x[j] - min) * id + 0.5f);
    const int hi = static_cast<std::uint8_t>((x[j + 16] - min) * id + 0.5f);
    y.qs[j] = static_cast<std::uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
    qh |= static_cast<std::uint32_t>((lo & 0x10) >> 4) << j;
    qh |= static_cast<std::uint32_t>((hi & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(y.qh, &qh, 4);
  return y;
}

inline BlockQ8_0 quantize_q8_0(const float* x) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
  BlockQ8_0 y{};
  y.d = float_to_half_bits(d);
  for (int j = 0; j < 32; ++j) y.qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
  return y;
}

inline BlockQ2_K quantize_q2_k(const float* x) {
  std::uint8_t L[QK_K];
  float weights[16], mins[16], scales[16];
  BlockQ2_K y{};
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, mins[j], -0.5f, 0.1f, 15, true);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  if (max_scale > 0) {
    const float iscale = 15.f / max_scale;
    for (int j = 0; j < 16; ++j) y.scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
    y.d = float_to_half_bits(max_scale / 15.f);
  }
  if (max_min > 0) {
    const float iscale = 15.f / max_min;
    for (int j = 0; j < 16; ++j) y.scales[j] |= static_cast<std::uint8_t>(nearest_int(iscale * mins[j]) << 4);
    y.dmin = float_to_half_bits(max_min / 15.f);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = half_bits_to_float(y.d) * static_cast<float>(y.scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = half_bits_to_float(y.dmin) * static_cast<float>(y.scales[j] >> 4);
    for (int i = 0; i < 16; ++i) L[16 * j + i] = static_cast<std::uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * j + i] + dm) / d))));
  }
  pack_2bit(L, y.qs);
  return y;
}

inline BlockQ3_K quantize_q3_k(const float* x) {
  std::int8_t L[QK_K];
  float scales[16];
  BlockQ3_K y{};
  float max_scale = 0, amax = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    if (std::fabs(scales[j]) > amax) { amax = std::fabs(scales[j]); max_scale = scales[j]; }
  }
  if (max_scale != 0) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
      const int l = std::max(-32, std::min(31, static_cast<int>(static_cast<std::int8_t>(nearest_int(iscale * scales[j]))))) + 32;
      pack_q3_k_scale(j, l, y.scales);
    }
    y.d = float_to_half_bits(1 / iscale);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = half_bits_to_float(y.d) * static_cast<float>(q3_k_scale(y.scales, j) - 32);
    if (d == 0) continue;
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = static_cast<std::int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + i] / d))) + 4);
  }
  pack_q3_k_levels(L, y.hmask, y.qs);
  return y;
}

/// Q4_K and Q5_K share everything but the level count and the search grid.
template <class Block, int Nmax>
Block quantize_q45_k(const float* x, float rmin, float rdelta, int nstep) {
  std::uint8_t L[QK_K];
  float weights[32], mins[8], scales[8];
  Block y{};
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, Nmax, x + 32 * j, weights, L + 32 * j, mins[j], rmin, rdelta, nstep, false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_min * mins[j])));
  }
  pack_scale_min_k4(ls, lm, y.scales);
  y.d = float_to_half_bits(max_scale / 63.f);
  y.dmin = float_to_half_bits(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, m;
    scale_min_k4(j, y.scales, sc, m);
    const float d = half_bits_to_float(y.d) * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = half_bits_to_float(y.dmin) * static_cast<float>(m);
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = static_cast<std::uint8_t>(std::max(0, std::min(Nmax, nearest_int((x[32 * j + i] + dm) / d))));
  }
  pack_q45_k_levels<Nmax>(L, y);
  return y;
}

inline BlockQ6_K quantize_q6_k(const float* x) {
  std::int8_t L[QK_K];
  float scales[16];
  BlockQ6_K y{};
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    if (std::fabs(scales[ib]) > max_abs_scale) { max_abs_scale = std::fabs(scales[ib]); max_scale = scales[ib]; }
  }
  if (max_abs_scale < group_max_eps) return y;  // all zero
  const float iscale = -128.f / max_scale;
  y.d = float_to_half_bits(1 / iscale);
  for (int ib = 0; ib < 16; ++ib) y.scales[ib] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = half_bits_to_float(y.d) * static_cast<float>(y.scales[j]);
    if (d == 0) continue;
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = static_cast<std::int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * j + i] / d))) + 32);
  }
  pack_q6_k_levels(L, y);
  return y;
}

/// Blocks are independent, so threads split them without changing a byte of the result.
/// quantize_row_mxfp4_ref: the E8M0 exponent of the largest magnitude, less 2 (6 = 1.5 · 2^2 is
/// E2M1's largest value), each weight the nearest of the 16 values, the first index on ties (so
/// ties go to the smaller magnitude, and -0 is never written). Exponents outside 0..254, which
/// ggml's cast leaves undefined, are clamped.
inline BlockMxFp4 quantize_mxfp4(const float* x) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float exponent = amax > 0.0f ? std::floor(std::log2(amax)) - 2 + 127 : 0.0f;
  BlockMxFp4 y{static_cast<std::uint8_t>(std::clamp(exponent, 0.0f, 254.0f)), {}};
  const float d = e8m0_half(y.e);
  const auto best = [&](float v) {
    int index = 0;
    float error = std::fabs(static_cast<float>(kvalues_mxfp4[0]) * d - v);
    for (int i = 1; i < 16; ++i)
      if (const float e = std::fabs(static_cast<float>(kvalues_mxfp4[i]) * d - v); e < error) index = i, error = e;
    return static_cast<std::uint8_t>(index);
  };
  for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(best(x[j]) | best(x[j + 16]) << 4);
  return y;
}

template <class Block, class F>
void quantize_blocks(std::span<const float> x, std::span<std::byte> out, int block_weights, F quantize_block) {
  const auto blocks = static_cast<std::ptrdiff_t>(x.size() / static_cast<std::size_t>(block_weights));
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t b = 0; b < blocks; ++b) {
    const Block y = quantize_block(x.data() + static_cast<std::size_t>(b) * static_cast<std::size_t>(block_weights));
    std::memcpy(out.data() + static_cast<std::size_t>(b) * sizeof(Block), &y, sizeof(Block));
  }
}

}  // namespace detail

/// Bytes `n` weights of `type` take (n must be a whole number of blocks).
inline std::size_t quantized_size(Type type, std::size_t n) {
  const TypeTraits t = traits(type);
  autoround::detail::require(t.block_weights > 0, std::string("ggml type ") + t.name + " is not supported");
  autoround::detail::require(n % t.block_weights == 0, std::to_string(n) + " weights are not a whole number of " +
                                                           t.name + " blocks of " + std::to_string(t.block_weights));
  return n / t.block_weights * t.block_bytes;
}

/// Quantize float weights into ggml blocks of `type` (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, MXFP4),
/// as llama.cpp's quantize_row_*_ref. `x.size()` must be a whole number of blocks.
inline std::vector<std::byte> quantize(Type type, std::span<const float> x) {
  std::vector<std::byte> out(quantized_size(type, x.size()));
  switch (type) {
    case Type::F32: if (!x.empty()) std::memcpy(out.data(), x.data(), out.size()); break;
    case Type::F16:
      for (std::size_t i = 0; i < x.size(); ++i) {
        const std::uint16_t h = float_to_half_bits(x[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
      break;
    case Type::BF16:  // round to nearest even, as torch's .to(torch.bfloat16) and llama.cpp's ggml_fp32_to_bf16
      for (std::size_t i = 0; i < x.size(); ++i) {
        const std::uint16_t b = float_to_bf16_bits(x[i]);
        std::memcpy(out.data() + 2 * i, &b, 2);
      }
      break;
    case Type::Q4_0: detail::quantize_blocks<BlockQ4_0>(x, out, 32, detail::quantize_q4_0); break;
    case Type::Q4_1: detail::quantize_blocks<BlockQ4_1>(x, out, 32, detail::quantize_q4_1); break;
    case Type::Q8_0: detail::quantize_blocks<BlockQ8_0>(x, out, 32, detail::quantize_q8_0); break;
    case Type::Q5_0: detail::quantize_blocks<BlockQ5_0>(x, out, 32, detail::quantize_q5_0); break;
    case Type::Q5_1: detail::quantize_blocks<BlockQ5_1>(x, out, 32, detail::quantize_q5_1); break;
    case Type::Q2_K: detail::quantize_blocks<BlockQ2_K>(x, out, QK_K, detail::quantize_q2_k); break;
    case Type::Q3_K: detail::quantize_blocks<BlockQ3_K>(x, out, QK_K, detail::quantize_q3_k); break;
    case Type::Q4_K:
      detail::quantize_blocks<BlockQ4_K>(x, out, QK_K, [](const float* b) {
        return detail::quantize_q45_k<BlockQ4_K, 15>(b, -1.f, 0.1f, 20);
      });
      break;
    case Type::Q5_K:
      detail::quantize_blocks<BlockQ5_K>(x, out, QK_K, [](const float* b) {
        return detail::quantize_q45_k<BlockQ5_K, 31>(b, -0.5f, 0.1f, 15);
      });
      break;
    case Type::Q6_K: detail::quantize_blocks<BlockQ6_K>(x, out, QK_K, detail::quantize_q6_k); break;
    case Type::MXFP4: detail::quantize_blocks<BlockMxFp4>(x, out, 32, detail::quantize_mxfp4); break;
    default: throw Error(std::string("cannot quantize to ggml type ") + traits(type).name);
  }
  return out;
}

/// The ggml type that stores AutoRound-tuned weights of this scheme exactly (codes unchanged,
/// scale as d), if there is one: W4G32 sym -> Q4_0, W4G32 asym -> Q4_1, W5G32 sym -> Q5_0,
/// W5G32 asym -> Q5_1, W8G32 sym -> Q8_0.
inline std::optional<Type> exact_type_for(int bits, Index group_size, Symmetry symmetry) {
  if (group_size != 32) return std::nullopt;
  if (bits == 4) return symmetry == Symmetric ? Type::Q4_0 : Type::Q4_1;
  if (bits == 5) return symmetry == Symmetric ? Type::Q5_0 : Type::Q5_1;
  if (bits == 8 && symmetry == Symmetric) return Type::Q8_0;
  return std::nullopt;
}

/// Encode tuned weights into `type` blocks without re-deciding any rounding: Q4_0 / Q5_0 d = scale,
/// q = code (w = d * (code - 8 or 16)); Q8_0 d = scale, q = code - 128; Q4_1 / Q5_1 d = scale and
/// m = fp16(-scale * zero) (w = d * code + m; the one approximation: m is rounded to fp16).
inline std::vector<std::byte> encode_tuned(Type type, const IntWeightView& w, const std::string& name = "weight") {
  const auto exact = exact_type_for(w.bits, w.layout.group_size(), w.symmetry);
  autoround::detail::require(exact && *exact == type, name + ": W" + std::to_string(w.bits) + "G" +
                                                          std::to_string(w.layout.group_size()) +
                                                          (w.symmetry == Symmetric ? " sym" : " asym") +
                                                          " weights have no exact encoding as " + traits(type).name);
  autoround::detail::require(w.cols() % 32 == 0, name + ": in_features = " + std::to_string(w.cols()) +
                                                     " is not a multiple of the 32-weight ggml block");
  const Index blocks_per_row = w.cols() / 32;
  std::vector<std::byte> out(quantized_size(type, static_cast<std::size_t>(w.rows() * w.cols())));
  std::byte* p = out.data();
  for (Index r = 0; r < w.rows(); ++r)
    for (Index b = 0; b < blocks_per_row; ++b) {
      const std::uint16_t d = float_to_half_bits(w.scale(r, b));
      const auto code = [&](int j) { return w.code(r, 32 * b + j); };
      if (type == Type::Q8_0) {
        BlockQ8_0 y{d, {}};
        for (int j = 0; j < 32; ++j) y.qs[j] = static_cast<std::int8_t>(code(j) - 128);
        std::memcpy(p, &y, sizeof y);
        p += sizeof y;
      } else if (type == Type::Q4_0) {
        BlockQ4_0 y{d, {}};
        for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(code(j) | (code(j + 16) << 4));
        std::memcpy(p, &y, sizeof y);
        p += sizeof y;
      } else if (type == Type::Q5_0 || type == Type::Q5_1) {
        // low nibbles as Q4; bit 4 of weight j in bit j of qh
        std::uint8_t qs[16];
        std::uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
          qs[j] = static_cast<std::uint8_t>((code(j) & 0xF) | ((code(j + 16) & 0xF) << 4));
          qh |= static_cast<std::uint32_t>(code(j) >> 4) << j | static_cast<std::uint32_t>(code(j + 16) >> 4) << (j + 16);
        }
        if (type == Type::Q5_0) {
          BlockQ5_0 y{d, {}, {}};
          std::memcpy(y.qh, &qh, 4);
          std::memcpy(y.qs, qs, 16);
          std::memcpy(p, &y, sizeof y);
          p += sizeof y;
        } else {
          BlockQ5_1 y{d, float_to_half_bits(-w.scale(r, b) * static_cast<float>(w.zero(r, b))), {}, {}};
          std::memcpy(y.qh, &qh, 4);
          std::memcpy(y.qs, qs, 16);
          std::memcpy(p, &y, sizeof y);
          p += sizeof y;
        }
      } else {
        BlockQ4_1 y{d, float_to_half_bits(-w.scale(r, b) * static_cast<float>(w.zero(r, b))), {}};
        for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(code(j) | (code(j + 16) << 4));
        std::memcpy(p, &y, sizeof y);
        p += sizeof y;
      }
    }
  return out;
}

}  // namespace autoround::ggml
