#pragma once
// The tunable state of one quantized linear layer, as the reference's WrapperLinear holds it:
// a rounding offset v per weight (init 0) and clipping scales min_scale / max_scale per group
// (init 1, projected onto [0, 1] before every use), with the forward (fake-quantize the whole
// weight) and the straight-through backward over all groups. Layer and block tuners share it.
// A SuperGroupQuantizer (GGUF k-quants) sees each row's groups a super-group at a time.
#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "../backend/backend.hpp"
#include "../core/matrix.hpp"
#include "../quantizer/group_layout.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "../quantizer/quantizer.hpp"

namespace autoround {

namespace detail {
/// First non-finite element of a matrix, reported by name and position.
inline void require_finite(MatrixView m, const std::string& name) {
  if (m.allFinite()) return;
  for (Index r = 0; r < m.rows(); ++r)
    for (Index c = 0; c < m.cols(); ++c)
      if (!std::isfinite(m(r, c)))
        throw Error(name + ": element (" + std::to_string(r) + ", " + std::to_string(c) + ") is " +
                    (std::isnan(m(r, c)) ? "NaN" : "infinite"));
}
}  // namespace detail

template <WeightQuantizer Q>
class TunableWeight {
  static constexpr bool super_groups = SuperGroupQuantizer<Q>;

 public:
  TunableWeight(const Q& quantizer, MatrixView weight, const std::string& name = "weight")
      : quantizer_(set_up_for_weight(quantizer, weight)), weight_(weight), layout_(group_layout_for(quantizer, weight.rows(), weight.cols())) {
    if constexpr (super_groups) {
      super_ = quantizer.super_group_size();
      detail::require(super_ >= 1 && super_ <= static_cast<Index>(max_super_group),
                      name + ": super_group_size = " + std::to_string(super_) + ": must be between 1 and " +
                          std::to_string(max_super_group));
      const Index span = layout_.group_size() * super_;
      detail::require(super_ == 1 || weight.cols() % span == 0,
                      name + ": in_features = " + std::to_string(weight.cols()) + " is not a multiple of the super-group (" +
                          std::to_string(super_) + " groups of " + std::to_string(layout_.group_size()) + " = " +
                          std::to_string(span) + " weights)");
      supers_.resize(static_cast<std::size_t>(layout_.group_count() / super_));
    }
    detail::require_finite(weight, name);
    ranges_.resize(static_cast<std::size_t>(layout_.group_count()));  // {0, 0}: a tile's rows widen it
    for (Index r = 0; r < layout_.rows(); ++r)
      for (Index g = 0; g < layout_.groups_per_row(); ++g) {
        const GroupRange row = group_range(row_group(weight_, r, g));
        GroupRange& range = ranges_[group_index(r, g)];
        range.wmin = std::min(range.wmin, row.wmin);
        range.wmax = std::max(range.wmax, row.wmax);
      }
    rounding.assign(static_cast<std::size_t>(weight.size()), 0.0f);
    min_scale.assign(ranges_.size(), 1.0f);
    max_scale.assign(ranges_.size(), 1.0f);
    quants_.resize(ranges_.size());
  }

  const GroupLayout& layout() const { return layout_; }
  const Q& quantizer() const { return quantizer_; }
  MatrixView weight() const { return weight_; }

  /// Project the clipping scales onto [0, ceiling] (the reference clamps their .data to [0, 1]
  /// before each use; a searched start may go above 1: ClipSearch::ceiling).
  void clamp_scales() {
    for (auto* scales : {&min_scale, &max_scale})
      for (float& s : *scales) s = std::clamp(s, 0.0f, ceiling_);
  }
  void set_ceiling(float ceiling) {
    detail::require(ceiling >= 1.0f, "ClipSearch::ceiling must be at least 1");
    ceiling_ = ceiling;
  }

  /// out = fake-quantized weight under the current parameters (caches each group's scale/zero).
  template <HostBackend B>
  void forward(const B& backend, MutableMatrixView out) {
    clamp_scales();
    if constexpr (!super_groups)  // first, as one group may span several rows
      backend.parallel_for(layout_.row_bands(), [&](Index b) {
        for (Index g = 0; g < layout_.groups_per_row(); ++g) {
          const auto k = static_cast<std::size_t>(b * layout_.groups_per_row() + g);
          quants_[k] = quantizer_.group_quant(ranges_[k], min_scale[k], max_scale[k]);
        }
      });
    backend.parallel_for(layout_.rows(), [&](Index r) {
      for (Index g = 0; g < layout_.groups_per_row(); ++g) {
        const auto k = group_index(r, g);
        if constexpr (super_groups)
          if (g % super_ == 0) supers_[k / static_cast<std::size_t>(super_)] = quantize_super_group(k);
        quantizer_.fake_quantize(row_group(weight_, r, g), row_group(rounding, r, g), quants_[k],
                                 row_group(out, r, g));
      }
    });
  }

  /// Given dL/d(fake-quantized weight) in `grad` (overwritten in place with dL/dv), fill
  /// dL/dmin_scale and dL/dmax_scale. Uses the scales cached by the last forward().
  template <HostBackend B>
  void backward(const B& backend, MutableMatrixView grad, std::vector<float>& grad_min_scale,
                std::vector<float>& grad_max_scale) const {
    grad_min_scale.resize(ranges_.size());
    grad_max_scale.resize(ranges_.size());
    if constexpr (super_groups) {
      backend.parallel_for(layout_.rows(), [&](Index r) {
        ScaleGrad sg[max_super_group];
        for (Index g = 0; g < layout_.groups_per_row(); g += super_) {
          const auto k = group_index(r, g);
          const auto n = static_cast<std::size_t>(super_);
          const auto begin = r * layout_.cols() + layout_.group_begin(g);
          const auto length = static_cast<std::size_t>(layout_.group_begin(g + super_ - 1) + layout_.group_length(g + super_ - 1) -
                                                        layout_.group_begin(g));
          const std::span<float> grad_span(grad.data() + begin, length);
          quantizer_.backward(std::span<const float>(weight_.data() + begin, length),
                              std::span<const float>(rounding.data() + begin, length),
                              std::span<const GroupRange>(ranges_.data() + k, n),
                              std::span<const float>(min_scale.data() + k, n), std::span<const float>(max_scale.data() + k, n),
                              std::span<const GroupQuant>(quants_.data() + k, n), grad_span, grad_span, std::span(sg, n));
          for (std::size_t j = 0; j < n; ++j) {
            grad_min_scale[k + j] = sg[j].min_scale;
            grad_max_scale[k + j] = sg[j].max_scale;
          }
        }
      });
    } else if (layout_.group_rows() > 1) {
      // a tile's rows gathered into one span, so its scale gradient sums all its elements
      backend.parallel_for(layout_.row_bands(), [&](Index b) {
        const Index first = b * layout_.group_rows(), last = std::min(layout_.rows(), first + layout_.group_rows());
        std::vector<float> w, v, gr;
        for (Index g = 0; g < layout_.groups_per_row(); ++g) {
          w.clear(), v.clear(), gr.clear();
          for (Index r = first; r < last; ++r) {
            const auto wr = row_group(weight_, r, g), vr = row_group(rounding, r, g);
            const auto grow = row_group(grad, r, g);
            w.insert(w.end(), wr.begin(), wr.end());
            v.insert(v.end(), vr.begin(), vr.end());
            gr.insert(gr.end(), grow.begin(), grow.end());
          }
          const auto k = group_index(first, g);
          const ScaleGrad sg = quantizer_.backward(w, v, ranges_[k], min_scale[k], max_scale[k], quants_[k], gr, gr);
          grad_min_scale[k] = sg.min_scale;
          grad_max_scale[k] = sg.max_scale;
          const float* from = gr.data();
          for (Index r = first; r < last; ++r) {
            const auto grow = row_group(grad, r, g);
            std::copy(from, from + grow.size(), grow.begin());
            from += grow.size();
          }
        }
      });
    } else {
      backend.parallel_for(layout_.rows(), [&](Index r) {
        for (Index g = 0; g < layout_.groups_per_row(); ++g) {
          const auto k = group_index(r, g);
          const auto grad_group = row_group(grad, r, g);
          const ScaleGrad sg = quantizer_.backward(row_group(weight_, r, g), row_group(rounding, r, g), ranges_[k],
                                                   min_scale[k], max_scale[k], quants_[k], grad_group, grad_group);
          grad_min_scale[k] = sg.min_scale;
          grad_max_scale[k] = sg.max_scale;
        }
      });
    }
  }

  /// Final integer codes and per-group scale/zero under the current parameters.
  QuantizedWeight<Q> encode() {
    clamp_scales();
    QuantizedWeight<Q> result{quantizer_, layout_, {}, {}, {}, {}, {}, {}, {}};
    result.codes.resize(static_cast<std::size_t>(weight_.size()));
    result.scales.resize(ranges_.size());
    result.zeros.resize(ranges_.size());
    const bool double_quantized = super_groups && super_ > 1;
    if (double_quantized) {
      result.mins.resize(ranges_.size());
      result.super_scales.resize(supers_.size());
      result.super_mins.resize(supers_.size());
    }
    for (Index r = 0; r < layout_.rows(); ++r)
      for (Index g = 0; g < layout_.groups_per_row(); ++g) {
        const auto k = group_index(r, g);
        GroupQuant gq;
        if constexpr (super_groups) {
          if (g % super_ == 0) {
            const SuperQuant sq = quantize_super_group(k);
            if (double_quantized) {
              result.super_scales[k / static_cast<std::size_t>(super_)] = sq.scale;
              result.super_mins[k / static_cast<std::size_t>(super_)] = sq.min;
            }
          }
          gq = quants_[k];
          if (double_quantized) result.mins[k] = gq.min;
        } else {
          gq = quantizer_.group_quant(ranges_[k], min_scale[k], max_scale[k]);
        }
        result.scales[k] = gq.scale;
        result.zeros[k] = static_cast<std::int32_t>(gq.zero);
        const auto w = row_group(weight_, r, g);
        quantizer_.encode(w, row_group(rounding, r, g), gq,
                          std::span<std::uint8_t>(result.codes.data() + (w.data() - weight_.data()), w.size()));
      }
    return result;
  }

  std::vector<float> rounding;   ///< v, one per weight, [rows, cols] row-major
  std::vector<float> min_scale;  ///< one per group, [rows, groups_per_row]
  std::vector<float> max_scale;  ///< one per group

 private:
  std::size_t group_index(Index r, Index g) const { return static_cast<std::size_t>(layout_.group_index(r, g)); }

  /// The super-group whose first group is k: fills quants_[k, k + super_) and returns its d / dmin.
  SuperQuant quantize_super_group(std::size_t k) {
    const auto n = static_cast<std::size_t>(super_);
    return quantizer_.quantize_super_group(std::span<const GroupRange>(ranges_.data() + k, n),
                                           std::span<const float>(min_scale.data() + k, n),
                                           std::span<const float>(max_scale.data() + k, n), std::span(quants_.data() + k, n));
  }

  template <class M>
  auto row_group(M&& m, Index r, Index g) const {
    auto* base = m.data() + r * layout_.cols() + layout_.group_begin(g);
    return std::span(base, static_cast<std::size_t>(layout_.group_length(g)));
  }
  std::span<const float> row_group(const std::vector<float>& m, Index r, Index g) const {
    return {m.data() + r * layout_.cols() + layout_.group_begin(g), static_cast<std::size_t>(layout_.group_length(g))};
  }

  Q quantizer_;
  float ceiling_ = 1.0f;
  MatrixView weight_;
  GroupLayout layout_;
  std::vector<GroupRange> ranges_;
  std::vector<GroupQuant> quants_;
  Index super_ = 1;                 ///< groups per super-group (SuperGroupQuantizer)
  std::vector<SuperQuant> supers_;  ///< one per super-group, from the last forward()
};

}  // namespace autoround
