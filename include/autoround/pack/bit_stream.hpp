#pragma once
// GPTQ-family int32 packing: `bits`-wide fields laid end to end in a little-endian bit stream of
// 32-bit words (value i occupies bits [i*bits, (i+1)*bits)). For 2, 4 and 8 bits a word holds
// 32/bits whole values; for 3 bits 32 values fill three words and values 10 and 21 straddle a
// word boundary. Callers pass values already in [0, 2^bits - 1].
#include <cstdint>
#include <span>

#include "../core/error.hpp"

namespace autoround::detail {

inline bool packable_bits(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }

/// How many values one run of packing consumes, and how many words it fills.
inline int values_per_run(int bits) { return bits == 3 ? 32 : 32 / bits; }
inline int words_per_run(int bits) { return bits == 3 ? 3 : 1; }

inline std::uint32_t shifted(std::int32_t v, int shift) { return static_cast<std::uint32_t>(v) << shift; }

/// Pack one run: values_per_run(bits) values read through `at(i)` into words_per_run(bits) words
/// written through `put(w, word)`.
template <class At, class Put>
void pack_run(int bits, At at, Put put) {
  if (bits != 3) {
    std::uint32_t word = 0;
    for (int j = 0; j < 32 / bits; ++j) word |= shifted(at(j), bits * j);
    put(0, word);
    return;
  }
  std::uint32_t w0 = 0, w1 = 0, w2 = 0;
  for (int j = 0; j < 10; ++j) w0 |= shifted(at(j), 3 * j);
  w0 |= shifted(at(10), 30);
  w1 |= static_cast<std::uint32_t>((at(10) >> 2) & 1);
  for (int j = 0; j < 10; ++j) w1 |= shifted(at(11 + j), 3 * j + 1);
  w1 |= shifted(at(21), 31);
  w2 |= static_cast<std::uint32_t>((at(21) >> 1) & 3);
  for (int j = 0; j < 10; ++j) w2 |= shifted(at(22 + j), 3 * j + 2);
  put(0, w0);
  put(1, w1);
  put(2, w2);
}

/// Field i of a run, read back through `word(w)` (the inverse of pack_run for in-range values).
template <class Word>
std::uint32_t unpack_field(int bits, int i, Word word) {
  const int bit = i * bits;
  const int w = bit / 32, shift = bit % 32;
  std::uint64_t pair = word(w) >> shift;
  if (shift + bits > 32) pair |= static_cast<std::uint64_t>(word(w + 1)) << (32 - shift);
  return static_cast<std::uint32_t>(pair) & ((1u << bits) - 1);
}

}  // namespace autoround::detail
