#pragma once
// ggml's tensor types and the on-disk blocks of the ones we read (llama.cpp ggml-common.h).
// Each struct *is* the file layout: packed little-endian, sizes pinned by static_assert.
//
//   block_q8_0 (34 bytes, 32 weights)      block_q4_0 (18 bytes)       block_q4_1 (20 bytes)
//   | d: fp16 | qs: int8[32] |              | d: fp16 | qs: u8[16] |    | d: fp16 | m: fp16 | qs: u8[16] |
//   w[i] = d * qs[i]                         w[j] = d * (nib - 8)        w[j] = d * nib + m
//   (nibbles: qs[j] & 15 is weight j, qs[j] >> 4 is weight j + 16, for j < 16)
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "../core/error.hpp"
#include "../core/fp16.hpp"

namespace autoround::ggml {

enum class Type : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
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
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);

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
    default: return {};
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
    default:
      throw Error("ggml type " + std::to_string(static_cast<unsigned>(type)) + " cannot be dequantized here");
  }
}

}  // namespace autoround::ggml
