#pragma once
// Where tuning starts its clipping scales: the reference starts every group at min_scale =
// max_scale = 1 (the full range [min(w, 0), max(w, 0)]). ClipInit::WeightedSearch starts each
// group at the clipping that minimizes its activation-weighted rounding error
//   Σ_j a_j (w_j − qdq(w_j))²,   a_j = mean over the calibration tokens of x_j²
// (a_j: the j-th input channel's mean square, what llama.cpp's imatrix collects; the weighted sum
// is the expected squared output error of the group's row when channels are uncorrelated), with
// round-to-nearest codes (v = 0) and the quantizer's own group arithmetic. SignSGD then tunes
// v and the scales from there as usual. The search is a grid over [lowest, 1]: one ratio for
// both ends, then max_scale with min_scale fixed, then min_scale with max_scale fixed.
//
// Approximation: a SuperGroupQuantizer (GGUF k-quants) is searched one group at a time, as a
// super-group of one group (its group scale then needs no second-level rounding); the tuning
// that follows sees the real super-groups.
#include <array>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/matrix.hpp"
#include "../model/llama_block.hpp"
#include "../quantizer/group_layout.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "../quantizer/quantizer.hpp"
#include "tune_options.hpp"

namespace autoround {

/// Per Linear of a block: the mean square of each input channel over the calibration tokens.
using InputImportance = std::array<std::vector<float>, 7>;

/// Accumulates InputImportance over forwards of a block (BlockCache holds each linear's input).
class ImportanceAccumulator {
 public:
  void add(const BlockCache& cache) {
    for (Linear l : all_linears) {
      const RowMatrix& x = cache.of(l);
      auto& sum = sums_[static_cast<std::size_t>(l)];
      if (sum.size() == 0) sum = Eigen::VectorXd::Zero(x.cols());
      sum += x.cast<double>().colwise().squaredNorm().transpose();
    }
    tokens_ += static_cast<double>(cache.x.rows());
  }

  InputImportance result() const {
    InputImportance out;
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i].resize(static_cast<std::size_t>(sums_[i].size()));
      for (Index j = 0; j < sums_[i].size(); ++j) out[i][static_cast<std::size_t>(j)] = static_cast<float>(sums_[i][j] / tokens_);
    }
    return out;
  }

 private:
  std::array<Eigen::VectorXd, 7> sums_;
  double tokens_ = 0;
};

/// The full-precision block's InputImportance on `inputs` (one [seqlen, hidden] matrix per sample).
inline InputImportance input_importance(const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs) {
  ImportanceAccumulator accumulator;
  BlockCache cache;
  for (const RowMatrix& x : inputs) {
    RowMatrix h = x;
    block_forward(block, config, h, &cache);
    accumulator.add(cache);
  }
  return accumulator.result();
}

namespace detail {

/// Weighted squared rounding error of one group at clipping (lo, hi), codes rounded to nearest.
template <WeightQuantizer Q>
double clipped_group_error(const Q& q, std::span<const float> w, std::span<const float> importance, GroupRange range,
                           float lo, float hi, std::span<const float> zeros, std::span<float> out) {
  GroupQuant gq;
  if constexpr (SuperGroupQuantizer<Q>) {
    q.quantize_super_group(std::span<const GroupRange>(&range, 1), std::span<const float>(&lo, 1),
                           std::span<const float>(&hi, 1), std::span<GroupQuant>(&gq, 1));
  } else {
    gq = q.group_quant(range, lo, hi);
  }
  q.fake_quantize(w, zeros, gq, out);
  double error = 0;
  for (std::size_t j = 0; j < w.size(); ++j) {
    const double d = static_cast<double>(w[j]) - out[j];
    error += importance[j] * d * d;
  }
  return error;
}

}  // namespace detail

/// Fill `min_scale` / `max_scale` (one per group of `layout`, row-major) with each group's best
/// clipping under the weights `importance` (one per input column; empty: all 1). The grid has
/// `steps` + 1 ratios from `lowest` to 1; ratio 1 (the reference's start) is always a candidate,
/// so the result's weighted error is never above the reference start's.
template <WeightQuantizer Q, class ParallelFor>
void search_clip_scales(const Q& quantizer, MatrixView weight, std::span<const float> importance, const ParallelFor& parallel_for,
                        std::span<float> min_scale, std::span<float> max_scale, float lowest = 0.5f, int steps = 20) {
  const GroupLayout layout(weight.rows(), weight.cols(), quantizer.group_size());
  detail::require(static_cast<Index>(min_scale.size()) == layout.group_count() &&
                      static_cast<Index>(max_scale.size()) == layout.group_count(),
                  "search_clip_scales: one min_scale and max_scale per group");
  detail::require(importance.empty() || static_cast<Index>(importance.size()) == weight.cols(),
                  "search_clip_scales: one importance per input column");
  std::vector<float> unit;
  if (importance.empty()) unit.assign(static_cast<std::size_t>(weight.cols()), 1.0f);
  const std::span<const float> a = importance.empty() ? std::span<const float>(unit) : importance;
  const std::vector<float> zeros(static_cast<std::size_t>(layout.group_size()), 0.0f);
  auto ratio = [&](int i) { return 1.0f - (1.0f - lowest) * static_cast<float>(i) / static_cast<float>(steps); };
  parallel_for(layout.rows(), [&](Index r) {
    std::vector<float> out(static_cast<std::size_t>(layout.group_size()));
    for (Index g = 0; g < layout.groups_per_row(); ++g) {
      const auto n = static_cast<std::size_t>(layout.group_length(g));
      const std::span<const float> w(weight.data() + r * layout.cols() + layout.group_begin(g), n);
      const std::span<const float> ag = a.subspan(static_cast<std::size_t>(layout.group_begin(g)), n);
      const GroupRange range = group_range(w);
      auto error = [&](float lo, float hi) {
        return detail::clipped_group_error(quantizer, w, ag, range, lo, hi, std::span<const float>(zeros.data(), n),
                                           std::span<float>(out.data(), n));
      };
      float lo = 1.0f, hi = 1.0f;
      double best = error(lo, hi);
      auto consider = [&](float l, float h) {
        const double e = error(l, h);
        if (e < best) best = e, lo = l, hi = h;
      };
      for (int i = 1; i <= steps; ++i) consider(ratio(i), ratio(i));
      const float joint = lo;
      for (int i = 0; i <= steps; ++i) consider(joint, ratio(i));
      const float top = hi;
      for (int i = 0; i <= steps; ++i) consider(ratio(i), top);
      const auto k = static_cast<std::size_t>(r * layout.groups_per_row() + g);
      min_scale[k] = lo;
      max_scale[k] = hi;
    }
  });
}

}  // namespace autoround
