#pragma once
// AWQ's GEMM packing (auto_round/export/export_to_awq/utils.py, WQLinear_GEMM), 4-bit only.
// Tensors of one linear layer [out_features, in_features], G = in / group_size groups:
//   qweight  int32 [in, out / 8]  eight output channels per word
//   qzeros   int32 [G, out / 8]   likewise for the zero points (stored as they are)
//   scales   fp16  [G, out]
// Within a word the eight channels 8k+0 .. 8k+7 are interleaved: nibble p (bits 4p..4p+3) holds
// channel 8k + kAwqNibbleOrder[p], so that AWQ's kernels can unpack pairs with one shift.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/fp16.hpp"
#include "int_weight_view.hpp"

namespace autoround {

/// Channel (within its group of eight) held by nibble p of an AWQ word.
inline constexpr std::array<int, 8> kAwqNibbleOrder{0, 2, 4, 6, 1, 3, 5, 7};

struct AwqTensors {
  Index in_features = 0, out_features = 0, group_size = 0;
  std::vector<std::int32_t> qweight;  ///< [in, out / 8]
  std::vector<std::int32_t> qzeros;   ///< [groups, out / 8]
  std::vector<std::uint16_t> scales;  ///< fp16 bits, [groups, out]
  Index groups() const { return in_features / group_size; }
};

namespace detail {
inline void require_awq_shape(int bits, Index out, Index in, Index group_size, const std::string& what) {
  require(bits == 4, what + ": AWQ packing is 4-bit only, not " + std::to_string(bits) + "-bit");
  require(out % 8 == 0, what + ": out_features = " + std::to_string(out) + " must be a multiple of 8 for AWQ");
  require(in % group_size == 0, what + ": in_features = " + std::to_string(in) +
                                    " must be a multiple of group_size = " + std::to_string(group_size) + " for AWQ");
}

template <class Value>
std::int32_t awq_word(Value value) {
  std::uint32_t word = 0;
  for (int p = 0; p < 8; ++p) word |= static_cast<std::uint32_t>(value(kAwqNibbleOrder[p]) & 0xF) << (4 * p);
  return static_cast<std::int32_t>(word);
}
}  // namespace detail

inline AwqTensors pack_awq(const IntWeightView& w, const std::string& name = "weight") {
  const Index out = w.rows(), in = w.cols(), groups = w.groups();
  detail::require_awq_shape(w.bits, out, in, w.layout.group_size(), name);
  AwqTensors t{in, out, w.layout.group_size(), {}, {}, {}};
  const Index words = out / 8;
  t.qweight.resize(static_cast<std::size_t>(in * words));
  // eight output rows at a time, read along the input: the reads stay sequential
#pragma omp parallel for schedule(static)
  for (Index k = 0; k < words; ++k)
    for (Index i = 0; i < in; ++i)
      t.qweight[static_cast<std::size_t>(i * words + k)] =
          detail::awq_word([&](int j) { return static_cast<std::int32_t>(w.code(8 * k + j, i)); });
  t.qzeros.resize(static_cast<std::size_t>(groups * words));
  t.scales.resize(static_cast<std::size_t>(groups * out));
  for (Index g = 0; g < groups; ++g) {
    for (Index k = 0; k < words; ++k)
      t.qzeros[static_cast<std::size_t>(g * words + k)] = detail::awq_word([&](int j) { return w.zero(8 * k + j, g); });
    for (Index o = 0; o < out; ++o) t.scales[static_cast<std::size_t>(g * out + o)] = float_to_half_bits(w.scale(o, g));
  }
  return t;
}

template <Quantizer Q>
AwqTensors pack_awq(const QuantizedWeight<Q>& q, const std::string& name = "weight") {
  return pack_awq(int_view(q), name);
}

inline QuantizedWeight<DynamicIntQuantizer> unpack_awq(const AwqTensors& t, Symmetry symmetry = Asymmetric,
                                                       const std::string& name = "weight") {
  const Index out = t.out_features, in = t.in_features;
  detail::require(t.group_size > 0, name + ": group_size must be positive");
  detail::require_awq_shape(4, out, in, t.group_size, name);
  const Index groups = t.groups(), words = out / 8;
  detail::require(t.qweight.size() == static_cast<std::size_t>(in * words) &&
                      t.qzeros.size() == static_cast<std::size_t>(groups * words) &&
                      t.scales.size() == static_cast<std::size_t>(groups * out),
                  name + ": qweight/qzeros/scales sizes do not match in_features, out_features and group_size");
  auto q = make_unpacked(4, t.group_size, symmetry, out, in);
  const auto nibble = [](std::int32_t word, int p) { return (static_cast<std::uint32_t>(word) >> (4 * p)) & 0xF; };
  for (Index i = 0; i < in; ++i)
    for (Index k = 0; k < words; ++k)
      for (int p = 0; p < 8; ++p)
        q.codes[static_cast<std::size_t>((8 * k + kAwqNibbleOrder[p]) * in + i)] =
            static_cast<std::uint8_t>(nibble(t.qweight[static_cast<std::size_t>(i * words + k)], p));
  for (Index g = 0; g < groups; ++g)
    for (Index k = 0; k < words; ++k)
      for (int p = 0; p < 8; ++p) {
        const Index o = 8 * k + kAwqNibbleOrder[p];
        q.zeros[static_cast<std::size_t>(o * groups + g)] =
            static_cast<std::int32_t>(nibble(t.qzeros[static_cast<std::size_t>(g * words + k)], p));
        q.scales[static_cast<std::size_t>(o * groups + g)] = half_bits_to_float(t.scales[static_cast<std::size_t>(g * out + o)]);
      }
  return q;
}

}  // namespace autoround
