#pragma once
// Encode double-quantized AutoRound weights (DoubleQuantizer: the reference's int_asym_dq /
// int_sym_dq) into the ggml k-quant blocks they were tuned for, as AutoRound's GGUF exporter
// does for tuned layers (auto_round/export/export_to_gguf/packing.py, q*_k_quant_block with
// scale= / wmin= / d_scale= / d_wmin=): the 4/6/8-bit codes of the group scales and mins are
// round(scale / d) and round(min / dmin), d and dmin are stored as fp16, and each weight's
// level is re-derived from its tuned (fake-quantized) value against the stored grid. That
// re-derivation gives back the tuned codes (tests check it); it differs from them only inside
// a sub-block whose scale code is 0, where every level dequantizes to the same value.
//
// The one approximation, as in the reference: d and dmin are rounded to fp16 in the file, so a
// runtime's values differ from the tuned ones by that rounding (relative 2^-11 of d or dmin).
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
#include "../quantizer/double_quantizer.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "ggml_quantize.hpp"

namespace autoround {

/// A non-owning, non-template view of double-quantized weights (the QuantizedWeight layout).
struct DoubleQuantWeightView {
  QuantSpec spec;                         ///< bits, group_size, symmetry, super_group_size, super_bits
  GroupLayout layout{1, 1, 1};
  std::span<const std::uint8_t> codes;    ///< [rows, cols]
  std::span<const float> scales;          ///< [rows, groups_per_row]
  std::span<const std::int32_t> zeros;    ///< [rows, groups_per_row]
  std::span<const float> mins;            ///< [rows, groups_per_row] (zeros for symmetric)
  std::span<const float> super_scales;    ///< [rows, supers_per_row]
  std::span<const float> super_mins;      ///< [rows, supers_per_row]

  Index rows() const { return layout.rows(); }
  Index cols() const { return layout.cols(); }
};

template <SuperGroupQuantizer Q>
DoubleQuantWeightView double_quant_view(const QuantizedWeight<Q>& q) {
  const auto groups = static_cast<std::size_t>(q.layout.group_count());
  const QuantSpec spec = q.quantizer.spec();
  detail::require(spec.super_group_size > 0, "QuantizedWeight: not double-quantized (super_group_size 0)");
  const auto supers = groups / static_cast<std::size_t>(spec.super_group_size);
  detail::require(q.codes.size() == static_cast<std::size_t>(q.rows() * q.cols()) && q.scales.size() == groups &&
                      q.zeros.size() == groups && q.mins.size() == groups && q.super_scales.size() == supers &&
                      q.super_mins.size() == supers,
                  "QuantizedWeight: codes/scales/mins/super-scales sizes do not match its layout");
  return {spec, q.layout, q.codes, q.scales, q.zeros, q.mins, q.super_scales, q.super_mins};
}

namespace ggml {

/// The double-quantization scheme AutoRound tunes for a k-quant type (auto_round/schemes.py
/// GGUF_SCHEME_FACTS), if `type` is one.
inline std::optional<QuantSpec> double_quant_spec_for(Type type) {
  switch (type) {
    case Type::Q2_K: return QuantSpec{2, 16, Asymmetric, 16, 4};
    case Type::Q3_K: return QuantSpec{3, 16, Symmetric, 16, 6};
    case Type::Q4_K: return QuantSpec{4, 32, Asymmetric, 8, 6};
    case Type::Q5_K: return QuantSpec{5, 32, Asymmetric, 8, 6};
    case Type::Q6_K: return QuantSpec{6, 16, Symmetric, 16, 8};
    default: return std::nullopt;
  }
}

namespace detail {

inline float round_even(float x) { return autoround::detail::round_half_even(x); }
inline float clampf(float x, float lo, float hi) { return std::min(std::max(x, lo), hi); }

/// The tuned value of weight i of a row: scale * (code - zero) - min, as QuantizedWeight::dequantize.
struct TunedRow {
  const DoubleQuantWeightView& w;
  Index r;
  float value(Index c) const {
    const auto k = static_cast<std::size_t>(r * w.layout.groups_per_row() + c / w.layout.group_size());
    const float code_minus_zero = static_cast<float>(w.codes[static_cast<std::size_t>(r * w.cols() + c)]) -
                                  static_cast<float>(w.zeros[k]);
    return w.scales[k] * code_minus_zero - w.mins[k];
  }
};

template <class Block, int Nmax>
Block encode_tuned_q45_k(const DoubleQuantWeightView& w, Index r, Index b) {
  const TunedRow row{w, r};
  const auto g0 = static_cast<std::size_t>(r * w.layout.groups_per_row() + 8 * b);
  const float d = w.super_scales[g0 / 8], dmin = w.super_mins[g0 / 8];
  std::uint8_t ls[8], lm[8];
  Block y{};
  y.d = float_to_half_bits(d);
  y.dmin = float_to_half_bits(dmin);
  const float hd = half_bits_to_float(y.d), hdmin = half_bits_to_float(y.dmin);
  std::uint8_t L[QK_K];
  for (int j = 0; j < 8; ++j) {
    ls[j] = static_cast<std::uint8_t>(clampf(round_even(w.scales[g0 + j] * autoround::detail::reciprocal(d)), 0, 63));
    lm[j] = static_cast<std::uint8_t>(clampf(round_even(w.mins[g0 + j] * autoround::detail::reciprocal(dmin)), 0, 63));
    float d_tmp = hd * static_cast<float>(ls[j]);
    const float dm_tmp = hdmin * static_cast<float>(lm[j]);
    if (d_tmp == 0) d_tmp = 1;
    const float inv = autoround::detail::reciprocal(d_tmp);
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = static_cast<std::uint8_t>(
          clampf(round_even((row.value(QK_K * b + 32 * j + i) + dm_tmp) * inv), 0, static_cast<float>(Nmax)));
  }
  pack_scale_min_k4(ls, lm, y.scales);
  pack_q45_k_levels<Nmax>(L, y);
  return y;
}

inline BlockQ2_K encode_tuned_q2_k(const DoubleQuantWeightView& w, Index r, Index b) {
  const TunedRow row{w, r};
  const auto g0 = static_cast<std::size_t>(r * w.layout.groups_per_row() + 16 * b);
  const float d = w.super_scales[g0 / 16], dmin = w.super_mins[g0 / 16];
  BlockQ2_K y{};
  std::uint8_t L[QK_K];
  for (int j = 0; j < 16; ++j) {
    const float scale = w.scales[g0 + j], min = w.mins[g0 + j];
    const auto ls = static_cast<std::uint8_t>(clampf(round_even(scale * autoround::detail::reciprocal(d)), 0, 15));
    const auto lm = static_cast<std::uint8_t>(clampf(round_even(min * autoround::detail::reciprocal(dmin)), 0, 15));
    y.scales[j] = static_cast<std::uint8_t>(ls | (lm << 4));
    for (int i = 0; i < 16; ++i)  // the reference divides by the tuned float scale here, not the stored grid
      L[16 * j + i] = static_cast<std::uint8_t>(clampf(round_even((row.value(QK_K * b + 16 * j + i) + min) / scale), 0, 3));
  }
  pack_2bit(L, y.qs);
  y.d = float_to_half_bits(d);
  y.dmin = float_to_half_bits(dmin);
  return y;
}

inline BlockQ3_K encode_tuned_q3_k(const DoubleQuantWeightView& w, Index r, Index b) {
  const TunedRow row{w, r};
  const auto g0 = static_cast<std::size_t>(r * w.layout.groups_per_row() + 16 * b);
  const float d = w.super_scales[g0 / 16];
  BlockQ3_K y{};
  std::uint8_t L[QK_K];
  for (int j = 0; j < 16; ++j) {
    const float scale = w.scales[g0 + j];
    const float inv = autoround::detail::reciprocal(scale);
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = static_cast<std::uint8_t>(clampf(round_even(row.value(QK_K * b + 16 * j + i) * inv), -4, 3) + 4);
    pack_q3_k_scale(j, static_cast<int>(clampf(round_even(scale * autoround::detail::reciprocal(d)), -32, 31)) + 32, y.scales);
  }
  pack_q3_k_levels(L, y.hmask, y.qs);
  y.d = float_to_half_bits(d);
  return y;
}

inline BlockQ6_K encode_tuned_q6_k(const DoubleQuantWeightView& w, Index r, Index b) {
  const TunedRow row{w, r};
  const auto g0 = static_cast<std::size_t>(r * w.layout.groups_per_row() + 16 * b);
  const float d = w.super_scales[g0 / 16];
  BlockQ6_K y{};
  y.d = float_to_half_bits(d);
  const float hd = half_bits_to_float(y.d);
  std::uint8_t L[QK_K];
  for (int j = 0; j < 16; ++j) {
    const float sc = std::min(round_even(w.scales[g0 + j] * autoround::detail::reciprocal(d)), 127.0f);
    y.scales[j] = static_cast<std::int8_t>(sc);
    float d_tmp = hd * static_cast<float>(y.scales[j]);
    if (d_tmp == 0) d_tmp = 1;
    const float inv = autoround::detail::reciprocal(d_tmp);
    for (int i = 0; i < 16; ++i)  // the reference adds the offset 32 before rounding
      L[16 * j + i] = static_cast<std::uint8_t>(clampf(round_even(row.value(QK_K * b + 16 * j + i) * inv + 32.0f), 0, 63));
  }
  pack_q6_k_levels(L, y);
  return y;
}

template <class Block, class F>
void encode_rows(const DoubleQuantWeightView& w, std::vector<std::byte>& out, F encode_block) {
  const Index blocks_per_row = w.cols() / QK_K;
#pragma omp parallel for schedule(static)
  for (Index r = 0; r < w.rows(); ++r)
    for (Index b = 0; b < blocks_per_row; ++b) {
      const Block y = encode_block(w, r, b);
      std::memcpy(out.data() + static_cast<std::size_t>(r * blocks_per_row + b) * sizeof(Block), &y, sizeof(Block));
    }
}

}  // namespace detail

/// Encode tuned double-quantized weights into `type` blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K); the
/// weights' scheme must be the one AutoRound tunes for `type` (double_quant_spec_for).
inline std::vector<std::byte> encode_tuned(Type type, const DoubleQuantWeightView& w, const std::string& name = "weight") {
  const auto expected = double_quant_spec_for(type);
  autoround::detail::require(expected && *expected == w.spec,
                             name + ": its double-quantized scheme is not the one " + traits(type).name + " stores");
  autoround::detail::require(w.cols() % QK_K == 0, name + ": in_features = " + std::to_string(w.cols()) +
                                                       " is not a multiple of the 256-weight k-quant block");
  std::vector<std::byte> out(quantized_size(type, static_cast<std::size_t>(w.rows() * w.cols())));
  switch (type) {
    case Type::Q2_K: detail::encode_rows<BlockQ2_K>(w, out, detail::encode_tuned_q2_k); break;
    case Type::Q3_K: detail::encode_rows<BlockQ3_K>(w, out, detail::encode_tuned_q3_k); break;
    case Type::Q4_K: detail::encode_rows<BlockQ4_K>(w, out, detail::encode_tuned_q45_k<BlockQ4_K, 15>); break;
    case Type::Q5_K: detail::encode_rows<BlockQ5_K>(w, out, detail::encode_tuned_q45_k<BlockQ5_K, 31>); break;
    default: detail::encode_rows<BlockQ6_K>(w, out, detail::encode_tuned_q6_k); break;
  }
  return out;
}

}  // namespace ggml
}  // namespace autoround
