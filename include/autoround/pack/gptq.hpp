#pragma once
// GPTQ-style packing, used by the auto_round format (AutoRound's default) and by auto_gptq.
// Tensors of one linear layer [out_features, in_features] with G = ceil(in / group_size) groups:
//   qweight  int32 [in * bits / 32, out]  codes of one output column packed along the input axis
//   qzeros   int32 [G, out * bits / 32]   zero points of one group packed along the output axis
//   scales   fp16  [G, out]
//   g_idx    int32 [in] = i / group_size   (auto_gptq only)
// The two zero-point conventions:
//   Stored   (auto_round, auto_round_extension/torch/qlinear_torch.py): the zero point itself;
//   MinusOne (GPTQ v1: auto_gptq and auto_round:auto_gptq, qlinear_torch_zp.py): zero - 1, and
//            the runtime adds the 1 back. A zero point of 0 has no v1 encoding: like the
//            reference (auto-round 0.16.1) we store max(zero - 1, 0), so that one zero point
//            reads back as 1 and its neighbours in the word stay intact.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/fp16.hpp"
#include "bit_stream.hpp"
#include "int_weight_view.hpp"

namespace autoround {

enum class GptqZeros { Stored, MinusOne };

struct GptqTensors {
  int bits = 4;
  Index in_features = 0, out_features = 0, group_size = 0;
  GptqZeros zero_convention = GptqZeros::Stored;
  std::vector<std::int32_t> qweight;  ///< [in * bits / 32, out]
  std::vector<std::int32_t> qzeros;   ///< [groups, out * bits / 32]
  std::vector<std::uint16_t> scales;  ///< fp16 bits, [groups, out]
  std::vector<std::int32_t> g_idx;    ///< [in], empty unless asked for

  Index groups() const { return (in_features + group_size - 1) / group_size; }
  Index qweight_rows() const { return in_features * bits / 32; }
  Index qzeros_cols() const { return out_features * bits / 32; }
};

namespace detail {
/// The shapes GPTQ packing accepts; `what` names the layer in the error.
inline void require_gptq_shape(int bits, Index rows, Index cols, const std::string& what) {
  require(packable_bits(bits), what + ": GPTQ packing supports 2, 3, 4 and 8 bits, not " + std::to_string(bits));
  const Index run = values_per_run(bits);
  require(cols % run == 0, what + ": in_features = " + std::to_string(cols) + " must be a multiple of " +
                               std::to_string(run) + " to pack " + std::to_string(bits) + "-bit codes");
  require(rows % run == 0, what + ": out_features = " + std::to_string(rows) + " must be a multiple of " +
                               std::to_string(run) + " to pack " + std::to_string(bits) + "-bit zero points");
}
}  // namespace detail

inline GptqTensors pack_gptq(const IntWeightView& w, GptqZeros zeros, bool with_g_idx = false,
                             const std::string& name = "weight") {
  const int bits = w.bits;
  const Index out = w.rows(), in = w.cols(), groups = w.groups();
  detail::require_gptq_shape(bits, out, in, name);
  GptqTensors t;
  t.bits = bits;
  t.in_features = in;
  t.out_features = out;
  t.group_size = w.layout.group_size();
  t.zero_convention = zeros;
  const int run = detail::values_per_run(bits), words = detail::words_per_run(bits);
  const Index qrows = in * bits / 32, qzcols = out * bits / 32;

  // qweight[k][o]: run k / run of column o, packed along the input axis.
  t.qweight.assign(static_cast<std::size_t>(qrows * out), 0);
#pragma omp parallel for schedule(static)
  for (Index o = 0; o < out; ++o)
    for (Index r = 0; r < in / run; ++r)
      detail::pack_run(
          bits, [&](int j) { return static_cast<std::int32_t>(w.code(o, r * run + j)); },
          [&](int k, std::uint32_t word) {
            t.qweight[static_cast<std::size_t>((r * words + k) * out + o)] = static_cast<std::int32_t>(word);
          });

  const std::int32_t offset = zeros == GptqZeros::MinusOne ? 1 : 0, max_code = (1 << bits) - 1;
  t.qzeros.assign(static_cast<std::size_t>(groups * qzcols), 0);
  for (Index g = 0; g < groups; ++g)
    for (Index r = 0; r < out / run; ++r)
      detail::pack_run(
          bits, [&](int j) { return std::clamp(w.zero(r * run + j, g) - offset, 0, max_code); },
          [&](int k, std::uint32_t word) {
            t.qzeros[static_cast<std::size_t>(g * qzcols + r * words + k)] = static_cast<std::int32_t>(word);
          });

  t.scales.resize(static_cast<std::size_t>(groups * out));
  for (Index g = 0; g < groups; ++g)
    for (Index o = 0; o < out; ++o) t.scales[static_cast<std::size_t>(g * out + o)] = float_to_half_bits(w.scale(o, g));

  if (with_g_idx) {
    t.g_idx.resize(static_cast<std::size_t>(in));
    for (Index i = 0; i < in; ++i) t.g_idx[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i / t.group_size);
  }
  return t;
}

template <Quantizer Q>
GptqTensors pack_gptq(const QuantizedWeight<Q>& q, GptqZeros zeros, bool with_g_idx = false,
                      const std::string& name = "weight") {
  return pack_gptq(int_view(q), zeros, with_g_idx, name);
}

/// Codes, scales and zero points back from packed tensors (sizes are checked).
inline QuantizedWeight<DynamicIntQuantizer> unpack_gptq(const GptqTensors& t, Symmetry symmetry = Asymmetric,
                                                        const std::string& name = "weight") {
  detail::require_gptq_shape(t.bits, t.out_features, t.in_features, name);
  const Index out = t.out_features, in = t.in_features, groups = t.groups();
  const Index qrows = t.qweight_rows(), qzcols = t.qzeros_cols();
  detail::require(t.qweight.size() == static_cast<std::size_t>(qrows * out) &&
                      t.qzeros.size() == static_cast<std::size_t>(groups * qzcols) &&
                      t.scales.size() == static_cast<std::size_t>(groups * out),
                  name + ": qweight/qzeros/scales sizes do not match in_features, out_features and group_size");
  auto q = make_unpacked(t.bits, t.group_size, symmetry, out, in);
  const int run = detail::values_per_run(t.bits), words = detail::words_per_run(t.bits);
  for (Index o = 0; o < out; ++o)
    for (Index r = 0; r < in / run; ++r)
      for (int j = 0; j < run; ++j)
        q.codes[static_cast<std::size_t>(o * in + r * run + j)] = static_cast<std::uint8_t>(
            detail::unpack_field(t.bits, j, [&](int k) {
              return static_cast<std::uint32_t>(t.qweight[static_cast<std::size_t>((r * words + k) * out + o)]);
            }));
  const std::int32_t offset = t.zero_convention == GptqZeros::MinusOne ? 1 : 0;
  for (Index g = 0; g < groups; ++g)
    for (Index r = 0; r < out / run; ++r)
      for (int j = 0; j < run; ++j)
        q.zeros[static_cast<std::size_t>((r * run + j) * groups + g)] =
            static_cast<std::int32_t>(detail::unpack_field(t.bits, j, [&](int k) {
              return static_cast<std::uint32_t>(t.qzeros[static_cast<std::size_t>(g * qzcols + r * words + k)]);
            })) + offset;
  for (Index g = 0; g < groups; ++g)
    for (Index o = 0; o < out; ++o)
      q.scales[static_cast<std::size_t>(o * groups + g)] = half_bits_to_float(t.scales[static_cast<std::size_t>(g * out + o)]);
  return q;
}

}  // namespace autoround
