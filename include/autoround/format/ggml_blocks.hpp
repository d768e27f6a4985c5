#pragma once
// ggml's tensor types and the on-disk blocks of the ones we read (llama.cpp ggml-common.h).
// Each struct *is* the file layout: packed little-endian, sizes pinned by static_assert.
//
//   block_q8_0 (34 bytes, 32 weights)      block_q4_0 (18 bytes)       block_q4_1 (20 bytes)
//   | d: fp16 | qs: int8[32] |              | d: fp16 | qs: u8[16] |    | d: fp16 | m: fp16 | qs: u8[16] |
//   w[i] = d * qs[i]                         w[j] = d * (nib - 8)        w[j] = d * nib + m
//   (nibbles: qs[j] & 15 is weight j, qs[j] >> 4 is weight j + 16, for j < 16)
//
// k-quants: super-blocks of 256 weights in 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32
// (Q4_K, Q5_K), each sub-block with a small integer scale (and min) that is itself scaled by the
// super-block's fp16 d (and dmin): the "double quantization" of the scales.
//   Q2_K  84 bytes | scales: u8[16] (low nibble scale, high nibble min) | qs: u8[64] | d | dmin |
//         w = d * sc * q - dmin * m,  q in 0..3
//   Q3_K 110 bytes | hmask: u8[32] | qs: u8[64] | scales: 12 bytes of 16 x 6-bit | d |
//         w = d * (sc - 32) * (q - 4),  q in 0..7 (2 low bits in qs, high bit in hmask)
//   Q4_K 144 bytes | d | dmin | scales: 12 bytes of 8 x (6-bit scale, 6-bit min) | qs: u8[128] |
//         w = d * sc * q - dmin * m,  q in 0..15
//   Q5_K 176 bytes | d | dmin | scales: 12 bytes | qh: u8[32] | qs: u8[128] |   q in 0..31
//   Q6_K 210 bytes | ql: u8[128] | qh: u8[64] | scales: int8[16] | d |
//         w = d * sc * (q - 32),  q in 0..63
// MXFP4 (OCP microscaling FP4, 17 bytes per 32 weights) | e: E8M0 | qs: u8[16] |
//         w = E2M1(code) * 2^(e - 127), codes as Q4_0's nibbles (bit 3 the sign, bits 0-2 the
//         magnitude index into 0, .5, 1, 1.5, 2, 3, 4, 6); ggml stores the magnitudes doubled
//         (0..12) and halves the scale, the same values.
// Where each weight's bits sit inside qs/qh/hmask is spelled out by dequantize() below and in
// docs/formats.md.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/fp16.hpp"

namespace autoround::ggml {

enum class Type : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30, MXFP4 = 39,
};

struct BlockQ8_0 {
  std::uint16_t d;
  std::int8_t qs[32];
};
struct BlockQ4_0 {
  std::uint16_t d;
  std::uint8_t qs[16];
};
struct BlockQ4_1 {
  std::uint16_t d, m;
  std::uint8_t qs[16];
};
/// Q5_0 / Q5_1: as Q4_0 / Q4_1 with a fifth bit per weight, bit j of the little-endian u32 qh.
struct BlockQ5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockQ5_1 {
  std::uint16_t d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockMxFp4 {
  std::uint8_t e;  ///< E8M0 shared exponent: the block's scale is 2^(e - 127)
  std::uint8_t qs[16];
};
/// ggml's kvalues_mxfp4: E2M1 values times 2, indexed by the 4-bit code.
inline constexpr std::int8_t kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
/// 2^(e - 128): half the E8M0 scale, as ggml multiplies the doubled values by it (e = 0 gives 2^-128).
inline float e8m0_half(std::uint8_t e) { return std::ldexp(1.0f, static_cast<int>(e) - 128); }

static_assert(sizeof(BlockMxFp4) == 17);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 &&
              sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);

inline constexpr int QK_K = 256;  ///< weights per k-quant super-block

struct BlockQ2_K {
  std::uint8_t scales[16];
  std::uint8_t qs[64];
  std::uint16_t d, dmin;
};
struct BlockQ3_K {
  std::uint8_t hmask[32];
  std::uint8_t qs[64];
  std::uint8_t scales[12];
  std::uint16_t d;
};
struct BlockQ4_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};
struct BlockQ5_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};
struct BlockQ6_K {
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  std::uint16_t d;
};
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

/// Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K / Q5_K: sub-blocks 0-3
/// keep 6 bits in bytes j and j+4; 4-7 keep their low 4 bits in byte j+4 and their top 2 bits in
/// the spare top bits of bytes j-4 (scale) and j (min).
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    min = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// The 16 six-bit scales of Q3_K (still offset by 32): low nibbles in bytes 0-7, top 2 bits in 8-11.
inline int q3_k_scale(const std::uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

/// Weights per block and bytes per block of a type we can dequantize; {0, 0} if unsupported.
struct TypeTraits {
  std::size_t block_weights = 0, block_bytes = 0;
  const char* name = "unsupported";
};
inline TypeTraits traits(Type t) {
  switch (t) {
    case Type::F32: return {1, 4, "F32"};
    case Type::F16: return {1, 2, "F16"};
    case Type::BF16: return {1, 2, "BF16"};
    case Type::Q8_0: return {32, sizeof(BlockQ8_0), "Q8_0"};
    case Type::Q4_0: return {32, sizeof(BlockQ4_0), "Q4_0"};
    case Type::Q4_1: return {32, sizeof(BlockQ4_1), "Q4_1"};
    case Type::Q5_0: return {32, sizeof(BlockQ5_0), "Q5_0"};
    case Type::Q5_1: return {32, sizeof(BlockQ5_1), "Q5_1"};
    case Type::Q2_K: return {QK_K, sizeof(BlockQ2_K), "Q2_K"};
    case Type::Q3_K: return {QK_K, sizeof(BlockQ3_K), "Q3_K"};
    case Type::Q4_K: return {QK_K, sizeof(BlockQ4_K), "Q4_K"};
    case Type::Q5_K: return {QK_K, sizeof(BlockQ5_K), "Q5_K"};
    case Type::Q6_K: return {QK_K, sizeof(BlockQ6_K), "Q6_K"};
    case Type::MXFP4: return {32, sizeof(BlockMxFp4), "MXFP4"};
    default: return {};
  }
}

/// Calls f(block, out) for each k-quant super-block in `bytes` (copied: the data may be unaligned).
template <class Block, class F>
void for_each_block(const std::byte* bytes, std::span<float> out, F f) {
  constexpr std::size_t n = QK_K;
  for (std::size_t b = 0; b < out.size() / n; ++b) {
    Block block;
    std::memcpy(&block, bytes + b * sizeof(Block), sizeof(Block));
    f(block, out.data() + b * n);
  }
}

/// Q4_K and Q5_K: weight 64h + l (l < 32) is the low nibble of qs[32h + l], 64h + 32 + l its
/// high nibble; Q5_K's fifth bit of weight i is bit i / 32 of qh[i % 32].
template <class Block>
void dequantize_q45_k(const Block& x, float* y) {
  const float d = half_bits_to_float(x.d), dmin = half_bits_to_float(x.dmin);
  for (int i = 0; i < QK_K; ++i) {
    const int h = i / 64, l = i % 32, shift = (i % 64) < 32 ? 0 : 4;
    std::uint8_t sc, m;
    scale_min_k4(i / 32, x.scales, sc, m);
    int q = (x.qs[32 * h + l] >> shift) & 0xF;
    if constexpr (std::is_same_v<Block, BlockQ5_K>) q |= ((x.qh[l] >> (i / 32)) & 1) << 4;
    y[i] = d * static_cast<float>(sc) * static_cast<float>(q) - dmin * static_cast<float>(m);
  }
}

/// Dequantize `out.size()` weights stored as `type` in `bytes` (sizes checked by the caller).
inline void dequantize(Type type, std::span<const std::byte> bytes, std::span<float> out) {
  const std::byte* p = bytes.data();
  switch (type) {
    case Type::F32:
      // An empty tensor may come with null pointers, which memcpy must never see.
      if (!out.empty()) std::memcpy(out.data(), p, out.size() * 4);
      return;
    case Type::F16:
      for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_bits_to_float(h);
      }
      return;
    case Type::BF16:
      for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const std::uint32_t f = static_cast<std::uint32_t>(h) << 16;
        std::memcpy(&out[i], &f, 4);
      }
      return;
    case Type::Q8_0:
      for (std::size_t b = 0; b < out.size() / 32; ++b) {
        BlockQ8_0 block;
        std::memcpy(&block, p + b * sizeof block, sizeof block);
        const float d = half_bits_to_float(block.d);
        for (int i = 0; i < 32; ++i) out[b * 32 + i] = d * static_cast<float>(block.qs[i]);
      }
      return;
    case Type::Q4_0:
      for (std::size_t b = 0; b < out.size() / 32; ++b) {
        BlockQ4_0 block;
        std::memcpy(&block, p + b * sizeof block, sizeof block);
        const float d = half_bits_to_float(block.d);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * static_cast<float>((block.qs[j] & 15) - 8);
          out[b * 32 + j + 16] = d * static_cast<float>((block.qs[j] >> 4) - 8);
        }
      }
      return;
    case Type::Q4_1:
      for (std::size_t b = 0; b < out.size() / 32; ++b) {
        BlockQ4_1 block;
        std::memcpy(&block, p + b * sizeof block, sizeof block);
        const float d = half_bits_to_float(block.d), m = half_bits_to_float(block.m);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * static_cast<float>(block.qs[j] & 15) + m;
          out[b * 32 + j + 16] = d * static_cast<float>(block.qs[j] >> 4) + m;
        }
      }
      return;
    case Type::Q5_0:
    case Type::Q5_1:
      for (std::size_t b = 0; b < out.size() / 32; ++b) {
        const bool has_min = type == Type::Q5_1;
        std::uint16_t d, m = 0;
        std::uint32_t qh;
        std::memcpy(&d, p, 2);
        if (has_min) std::memcpy(&m, p + 2, 2);
        const std::byte* rest = p + (has_min ? 4 : 2);
        std::memcpy(&qh, rest, 4);
        std::uint8_t qs[16];
        std::memcpy(qs, rest + 4, 16);
        const float df = half_bits_to_float(d), mf = half_bits_to_float(m);
        for (int j = 0; j < 16; ++j) {
          const int lo = (qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
          const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
          out[b * 32 + j] = has_min ? df * static_cast<float>(lo) + mf : df * static_cast<float>(lo - 16);
          out[b * 32 + j + 16] = has_min ? df * static_cast<float>(hi) + mf : df * static_cast<float>(hi - 16);
        }
        p += has_min ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
      }
      return;
    case Type::Q2_K:
      for_each_block<BlockQ2_K>(p, out, [](const BlockQ2_K& x, float* y) {
        const float d = half_bits_to_float(x.d), dmin = half_bits_to_float(x.dmin);
        // weight 128h + 32s + l (l < 32) sits in bits 2s of qs[32h + l], sub-block (128h + 32s + l) / 16
        for (int i = 0; i < QK_K; ++i) {
          const int h = i / 128, s = (i % 128) / 32, l = i % 32;
          const int q = (x.qs[32 * h + l] >> (2 * s)) & 3;
          const std::uint8_t sc = x.scales[i / 16];
          y[i] = d * static_cast<float>(sc & 0xF) * static_cast<float>(q) - dmin * static_cast<float>(sc >> 4);
        }
      });
      return;
    case Type::Q3_K:
      for_each_block<BlockQ3_K>(p, out, [](const BlockQ3_K& x, float* y) {
        const float d = half_bits_to_float(x.d);
        // low 2 bits as Q2_K; the high bit of weight i is bit i / 32 of hmask[i % 32]
        for (int i = 0; i < QK_K; ++i) {
          const int h = i / 128, s = (i % 128) / 32, l = i % 32;
          const int low = (x.qs[32 * h + l] >> (2 * s)) & 3;
          const int high = (x.hmask[i % 32] >> (i / 32)) & 1;
          y[i] = d * static_cast<float>(q3_k_scale(x.scales, i / 16) - 32) * static_cast<float>(low + 4 * high - 4);
        }
      });
      return;
    case Type::MXFP4:
      for (std::size_t b = 0; b < out.size() / 32; ++b) {
        BlockMxFp4 block;
        std::memcpy(&block, p + b * sizeof block, sizeof block);
        if (block.e == 0xFF) throw Error("MXFP4 block " + std::to_string(b) + ": E8M0 byte 255 is NaN (ggml refuses it too)");
        const float d = e8m0_half(block.e);
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = d * static_cast<float>(kvalues_mxfp4[block.qs[j] & 15]);
          out[b * 32 + j + 16] = d * static_cast<float>(kvalues_mxfp4[block.qs[j] >> 4]);
        }
      }
      return;
    case Type::Q4_K: for_each_block<BlockQ4_K>(p, out, dequantize_q45_k<BlockQ4_K>); return;
    case Type::Q5_K: for_each_block<BlockQ5_K>(p, out, dequantize_q45_k<BlockQ5_K>); return;
    case Type::Q6_K:
      for_each_block<BlockQ6_K>(p, out, [](const BlockQ6_K& x, float* y) {
        const float d = half_bits_to_float(x.d);
        // weight 128h + 32s + l: low nibble from ql[64h + 32(s&1) + l] (high nibble when s >= 2),
        // top 2 bits from bits 2s of qh[32h + l]
        for (int i = 0; i < QK_K; ++i) {
          const int h = i / 128, s = (i % 128) / 32, l = i % 32;
          const int low = (x.ql[64 * h + 32 * (s & 1) + l] >> (s >= 2 ? 4 : 0)) & 0xF;
          const int q = low | (((x.qh[32 * h + l] >> (2 * s)) & 3) << 4);
          y[i] = d * static_cast<float>(x.scales[i / 16]) * static_cast<float>(q - 32);
        }
      });
      return;
    default:
      throw Error("ggml type " + std::to_string(static_cast<unsigned>(type)) + " cannot be dequantized here");
  }
}

}  // namespace autoround::ggml
