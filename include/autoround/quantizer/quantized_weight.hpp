#pragma once
// The result of quantizing one linear layer: integer codes, one (scale, zero) per group, the
// quantizer that made them, and how tuning went. Packers (format/) read this type.
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"

#include "../core/matrix.hpp"
#include "group_layout.hpp"
#include "quantizer.hpp"

namespace autoround {

/// How tuning went, in the reference's terms (its log line "loss iter 0: A -> iter B: C").
struct TuningStats {
  int steps_run = 0;        ///< optimizer steps taken (iters, or fewer with dynamic_max_gap)
  double rtn_loss = 0.0;    ///< loss at step 0, before any update: plain round-to-nearest
  double best_loss = 0.0;   ///< lowest loss seen; the parameters that gave it are the result
  int best_step = 0;        ///< the step that loss was seen at
  double seconds = 0.0;     ///< wall time of the tuning loop
};

template <WeightQuantizer Q>
struct QuantizedWeight {
  Q quantizer;
  GroupLayout layout;               ///< rows = out_features, cols = in_features
  std::vector<std::uint8_t> codes;  ///< [rows, cols] row-major, each in [0, 2^bits - 1] (FloatQuantizer: E2M1 / E4M3 codes)
  std::vector<float> scales;        ///< [row_bands, groups_per_row] (row_bands = rows but for FP8_BLOCK's tiles);
                                    ///< fp16-representable, except double-quantized ones
                                    ///< (FloatQuantizer: the group scale as its format stores it: 2^E, E4M3, float32)
  std::vector<std::int32_t> zeros;  ///< [rows, groups_per_row]; sym: 2^(bits-1) everywhere
  TuningStats stats;
  // Double quantization (DoubleQuantizer; empty otherwise), as the reference exports it:
  std::vector<float> mins;          ///< [rows, groups_per_row]: w = scale * (code - zero) - min
  std::vector<float> super_scales;  ///< [rows, groups_per_row / super_group_size]: d, scales are k * d
  std::vector<float> super_mins;    ///< same shape: dmin, mins are k * dmin (asymmetric only)
  /// The largest |input| the layer saw over the calibration tokens (NVFP4 checkpoints store
  /// 2688 / it as input_global_scale, for the activations' quantization); 0 = not measured.
  float input_absmax = 0.0f;

  Index rows() const { return layout.rows(); }
  Index cols() const { return layout.cols(); }
  float scale(Index row, Index col) const { return scales[group_index(row, col)]; }
  std::int32_t zero(Index row, Index col) const { return zeros[group_index(row, col)]; }
  float min(Index row, Index col) const { return mins.empty() ? 0.0f : mins[group_index(row, col)]; }
  std::uint8_t code(Index row, Index col) const { return codes[static_cast<std::size_t>(row * cols() + col)]; }

  /// w = scale * (code - zero) - min, in float32: the tuned fake-quantized weight. Group by
  /// group, so a group's (scale, zero, min) is read once (an 8B model's block: 218M weights).
  RowMatrix dequantize() const {
    RowMatrix w(rows(), cols());
    const Index group = layout.group_size(), per_row = layout.groups_per_row();
    for (Index r = 0; r < rows(); ++r) {
      const std::uint8_t* code_row = codes.data() + static_cast<std::size_t>(r * cols());
      float* out = w.data() + r * cols();
      for (Index g = 0; g < per_row; ++g) {
        const auto i = static_cast<std::size_t>(layout.group_index(r, g));
        const float scale = scales[i], zero = static_cast<float>(zeros[i]), m = mins.empty() ? 0.0f : mins[i];
        const Index end = std::min(cols(), (g + 1) * group);
        if constexpr (FloatCodeQuantizer<Q>) {  // FloatQuantizer's element codes
          for (Index c = g * group; c < end; ++c) out[c] = quantizer.dequantize_code(code_row[c], scale);
        } else if (mins.empty())
          for (Index c = g * group; c < end; ++c) out[c] = scale * (static_cast<float>(code_row[c]) - zero);
        else
          for (Index c = g * group; c < end; ++c) out[c] = scale * (static_cast<float>(code_row[c]) - zero) - m;
      }
    }
    return w;
  }

 private:
  std::size_t group_index(Index row, Index col) const {
    return static_cast<std::size_t>(layout.group_index(row, col / layout.group_size()));
  }
};

/// Several layers' results as one layer of their rows stacked in order (a fused checkpoint
/// tensor such as Phi-3's qkv_proj = [q; k; v]): codes, scales and zero points are per row, so
/// stacking changes no value. The parts must share columns and scheme.
template <WeightQuantizer Q>
QuantizedWeight<Q> stack_rows(const std::vector<const QuantizedWeight<Q>*>& parts, const std::string& name) {
  detail::require(!parts.empty(), name + ": nothing to stack");
  const QuantizedWeight<Q>& first = *parts.front();
  QuantizedWeight<Q> out{first.quantizer, first.layout, {}, {}, {}, first.stats, {}, {}, {}};
  Index rows = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const QuantizedWeight<Q>* p = parts[i];
    detail::require(p->cols() == first.cols() && p->layout.group_size() == first.layout.group_size() &&
                        p->quantizer.spec() == first.quantizer.spec(),
                    name + ": its fused parts were quantized with different schemes or shapes; one tensor holds one scheme");
    detail::require(p->rows() % first.layout.group_rows() == 0 || i + 1 == parts.size(),
                    name + ": a fused part of " + std::to_string(p->rows()) + " rows splits a " +
                        std::to_string(first.layout.group_rows()) + "-row tile (FP8_BLOCK needs each part a multiple of its tiles)");
    if constexpr (requires { p->quantizer.global_scale(); })
      detail::require(p->quantizer.global_scale() == first.quantizer.global_scale(),
                      name + ": its fused parts have different global scales (NVFP4 shares one across q/k/v and gate/up)");
    out.input_absmax = std::max(out.input_absmax, p->input_absmax);
    rows += p->rows();
    const auto append = [](auto& into, const auto& from) { into.insert(into.end(), from.begin(), from.end()); };
    append(out.codes, p->codes);
    append(out.scales, p->scales);
    append(out.zeros, p->zeros);
    append(out.mins, p->mins);
    append(out.super_scales, p->super_scales);
    append(out.super_mins, p->super_mins);
  }
  out.layout = GroupLayout(rows, first.cols(), static_cast<int>(first.layout.group_size()), static_cast<int>(first.layout.group_rows()));
  return out;
}

/// The rows [first, first + count) of a layer's results as a layer of their own (deepseek2's
/// attn_v_b: each head's value rows of kv_b_proj): per-row codes, scales and zero points, so no
/// value changes. Row groups (FP8_BLOCK's tiles) are not split.
template <WeightQuantizer Q>
QuantizedWeight<Q> slice_rows(const QuantizedWeight<Q>& q, Index first, Index count, const std::string& name) {
  detail::require(first >= 0 && count > 0 && first + count <= q.rows() && q.layout.group_rows() == 1,
                  name + ": rows " + std::to_string(first) + "+" + std::to_string(count) + " of a " + std::to_string(q.rows()) +
                      "-row layer (of single-row groups) cannot be sliced");
  const auto part = [&](const auto& v) {
    using V = std::decay_t<decltype(v)>;
    if (v.empty()) return V{};
    const auto per_row = v.size() / static_cast<std::size_t>(q.rows());
    return V(v.begin() + static_cast<long>(static_cast<std::size_t>(first) * per_row),
             v.begin() + static_cast<long>(static_cast<std::size_t>(first + count) * per_row));
  };
  QuantizedWeight<Q> out{q.quantizer, GroupLayout(count, q.cols(), static_cast<int>(q.layout.group_size())), part(q.codes),
                         part(q.scales), part(q.zeros), q.stats, part(q.mins), part(q.super_scales), part(q.super_mins)};
  out.input_absmax = q.input_absmax;
  return out;
}

/// Several layers' results stacked (stack_rows) from rows of one: `ranges` of [first, count).
template <WeightQuantizer Q>
QuantizedWeight<Q> gather_rows(const QuantizedWeight<Q>& q, const std::vector<std::pair<Index, Index>>& ranges, const std::string& name) {
  std::vector<QuantizedWeight<Q>> parts;
  for (const auto& [first, count] : ranges) parts.push_back(slice_rows(q, first, count, name));
  std::vector<const QuantizedWeight<Q>*> pointers;
  for (const auto& p : parts) pointers.push_back(&p);
  return stack_rows(pointers, name);
}

}  // namespace autoround
