#pragma once
// Where tuning starts its clipping scales: the reference starts every group at min_scale =
// max_scale = 1 (the full range [min(w, 0), max(w, 0)]). ClipInit::WeightedSearch starts each
// group at the clipping that minimizes its weighted rounding error
//   Σ_j ω_j (w_j − qdq(w_j))²,   ω_j = a_j,   or a_j · sqrt(σ² + w_j²) (ClipSearch::magnitude_weighted)
// a_j being the j-th input channel's mean square over the calibration tokens (what llama.cpp's
// imatrix collects; Σ a_j d_j² is the expected squared output error of the group's row when the
// channels are uncorrelated); σ² is the mean square of the row's weights, the factor llama.cpp's
// imatrix quantizers put on each weight (ggml-quants.c, e.g. quantize_row_q4_0_impl), which
// measured worse out of domain here (docs/accuracy.md), hence off by default. Codes are rounded to
// nearest (v = 0) with the quantizer's own group arithmetic. The search is a grid over
// [lowest, 1] (one ratio for both ends, then max_scale with min_scale fixed, then min_scale with
// max_scale fixed), then `refits` weighted least-squares fits of the group's scale (and,
// asymmetric, its offset) to the best point's codes, each kept only where it lowers the error:
// a grid point's scale is that of a clipped range, the least-squares scale is the best for its
// codes (what llama.cpp's make_qx_quants ends with); off by default (ClipSearch, tune_options.hpp:
// better without tuning, within the noise after it). SignSGD then tunes v and the scales from
// there as usual.
//
// Symmetric integer groups may instead be searched as llama.cpp's imatrix quantizers search
// them (SymmetricSearch::ScaleGrid, detail::scale_grid_ratio): code grids around the full
// range's, each at its least-squares scale, which may be *wider* than the full range; such
// groups start, and are tuned, up to ClipSearch::ceiling (measured: docs/accuracy.md, "GGUF:
// llama.cpp's scale search as the start").
//
// Approximation: a SuperGroupQuantizer (GGUF k-quants) is searched one group at a time, as a
// super-group of one group (its group scale then needs no second-level rounding); the tuning
// that follows sees the real super-groups. Grid-searched scales stay in [0, 1] (tuning clamps
// them there), so a least-squares scale above the full range's is cut to it.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/matrix.hpp"
#include "../model/linear_slots.hpp"
#include "../model/llama_block.hpp"
#include "../quantizer/group_layout.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "../quantizer/quantizer.hpp"
#include "tune_options.hpp"

namespace autoround {

/// Per slot of a block (linear_slots): the mean square of each input channel over the tokens
/// that reach the layer (a routed expert: the tokens routed to it, as llama.cpp's imatrix counts
/// them); empty where none did (the search then weighs every channel 1).
using InputImportance = std::vector<std::vector<float>>;

/// Accumulates InputImportance over forwards of a block (BlockCache holds each linear's input).
class ImportanceAccumulator {
 public:
  explicit ImportanceAccumulator(std::vector<LinearSlot> slots)
      : slots_(std::move(slots)), sums_(slots_.size()), tokens_(slots_.size(), 0.0) {}

  void add(const BlockCache& cache) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const LinearSlot& s = slots_[i];
      if (s.expert == LinearSlot::own) add_rows(i, cache.of(s.role));
      else if (s.expert == LinearSlot::latent) add_rows(i, cache.attention_in);  // q_a_proj reads the normed hidden state
      else if (s.expert == LinearSlot::per_layer) add_rows(i, s.role == Linear::Gate ? cache.per_layer_in : cache.per_layer_product);
      else if (s.expert == LinearSlot::shared) add_rows(i, s.role == Linear::Down ? cache.moe.shared_act : cache.experts_input());
      else if (s.role == Linear::Down) add_rows(i, cache.moe.act[static_cast<std::size_t>(s.expert)]);
      else add_rows(i, cache.experts_input(), cache.moe.rows[static_cast<std::size_t>(s.expert)]);
    }
  }

  /// Per slot: the largest |input| seen (0 where no token reached it).
  std::vector<float> absmax() const { return absmax_; }

  InputImportance result() const {
    InputImportance out(slots_.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (tokens_[i] == 0) continue;
      out[i].resize(static_cast<std::size_t>(sums_[i].size()));
      for (Index j = 0; j < sums_[i].size(); ++j) out[i][static_cast<std::size_t>(j)] = static_cast<float>(sums_[i][j] / tokens_[i]);
    }
    return out;
  }

 private:
  void add_rows(std::size_t i, const RowMatrix& x) {
    if (x.rows() == 0) return;
    absmax_[i] = std::max(absmax_[i], x.cwiseAbs().maxCoeff());
    if (sums_[i].size() == 0) sums_[i] = Eigen::VectorXd::Zero(x.cols());
    sums_[i] += x.cast<double>().colwise().squaredNorm().transpose();
    tokens_[i] += static_cast<double>(x.rows());
  }
  void add_rows(std::size_t i, const RowMatrix& x, const std::vector<Index>& rows) {
    if (rows.empty()) return;
    for (Index t : rows) absmax_[i] = std::max(absmax_[i], x.row(t).cwiseAbs().maxCoeff());
    if (sums_[i].size() == 0) sums_[i] = Eigen::VectorXd::Zero(x.cols());
    for (Index t : rows) sums_[i] += x.row(t).cast<double>().array().square().matrix().transpose();
    tokens_[i] += static_cast<double>(rows.size());
  }

  std::vector<LinearSlot> slots_;
  std::vector<Eigen::VectorXd> sums_;
  std::vector<double> tokens_;
  std::vector<float> absmax_ = std::vector<float>(slots_.size(), 0.0f);
};

/// The full-precision block's InputImportance on `inputs` (one [seqlen, hidden] matrix per sample);
/// with `absmax`, also each slot's largest |input|.
inline InputImportance input_importance(const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs,
                                        std::vector<float>* absmax = nullptr, std::span<const BlockSideInputs> side = {}) {
  ImportanceAccumulator accumulator(linear_slots(block));
  BlockCache cache;
  for (std::size_t first = 0, batch = 1; first < inputs.size(); first += batch) {
    const Index seqlen = inputs[first].rows();
    batch = static_cast<std::size_t>(std::max<Index>(1, forward_batch_rows / std::max<Index>(seqlen, 1)));
    const std::size_t end = std::min(first + batch, inputs.size());
    RowMatrix h(static_cast<Index>(end - first) * seqlen, inputs[first].cols());
    for (std::size_t s = first; s < end; ++s) {
      if (inputs[s].rows() != seqlen) throw Error("input_importance: samples of different lengths");
      h.middleRows(static_cast<Index>(s - first) * seqlen, seqlen) = inputs[s];
    }
    if (side.empty()) {
      block_forward(block, config, h, &cache, seqlen);
    } else {  // (Gemma 4 E2B / E4B: the samples' per-layer inputs and donor keys, stacked alike)
      std::vector<Index> rows(end - first);
      for (std::size_t s = first; s < end; ++s) rows[s - first] = static_cast<Index>(s);
      const BlockSideInputs stacked = stack_side_inputs(rows, side);
      BlockWeights w = BlockWeights::of(block);
      w.side = &stacked;
      block_forward(w, config, h, &cache, seqlen);
    }
    accumulator.add(cache);
  }
  if (absmax) *absmax = accumulator.absmax();
  return accumulator.result();
}

namespace detail {

/// One group's (scale, zero, min) at clipping (lo, hi), as the quantizer computes it.
template <WeightQuantizer Q>
GroupQuant clipped_group_quant(const Q& q, GroupRange range, float lo, float hi) {
  GroupQuant gq;
  if constexpr (SuperGroupQuantizer<Q>) {
    q.quantize_super_group(std::span<const GroupRange>(&range, 1), std::span<const float>(&lo, 1),
                           std::span<const float>(&hi, 1), std::span<GroupQuant>(&gq, 1));
  } else {
    gq = q.group_quant(range, lo, hi);
  }
  return gq;
}

/// Weighted squared rounding error of one group at clipping (lo, hi), codes rounded to nearest.
template <WeightQuantizer Q>
double clipped_group_error(const Q& q, std::span<const float> w, std::span<const float> weights, GroupRange range,
                           float lo, float hi, std::span<const float> zeros, std::span<float> out) {
  q.fake_quantize(w, zeros, clipped_group_quant(q, range, lo, hi), out);
  double error = 0;
  for (std::size_t j = 0; j < w.size(); ++j) {
    const double d = static_cast<double>(w[j]) - out[j];
    error += weights[j] * d * d;
  }
  return error;
}

/// The clipping whose group arithmetic gives (about) the weighted least-squares scale and offset
/// for the codes that clipping (lo, hi) rounds to: w ≈ s·code + m (asymmetric), w ≈ s·(code −
/// zero) (symmetric). Both IntQuantizer and DoubleQuantizer dequantize affinely in the code, with
/// s = (wmax·hi − wmin·lo) / maxq and m = wmin·lo (asymmetric: the zero point rounds −m / s) or
/// s ∝ the larger clipped side (symmetric), which gives the inverse below. False when the codes
/// do not determine a fit (all one code, a group on one side of 0).
template <WeightQuantizer Q>
bool least_squares_clipping(const Q& q, std::span<const float> w, std::span<const float> weights, GroupRange range,
                            float& lo, float& hi, std::span<const float> zeros, std::span<std::uint8_t> codes) {
  const GroupQuant gq = clipped_group_quant(q, range, lo, hi);
  q.encode(w, zeros, gq, codes);
  double sw = 0, sc = 0, scc = 0, sx = 0, scx = 0;
  const double zero = q.symmetry() == Symmetric ? gq.zero : 0.0;
  for (std::size_t j = 0; j < w.size(); ++j) {
    const double c = static_cast<double>(codes[j]) - zero, x = w[j], a = weights[j];
    sw += a, sc += a * c, scc += a * c * c, sx += a * x, scx += a * c * x;
  }
  if (q.symmetry() == Symmetric) {
    if (scc <= 0 || gq.scale == 0.0f) return false;
    const double f = std::fabs(scx / scc / gq.scale);  // the clipped range scales with the scale
    lo = static_cast<float>(std::min(1.0, lo * f));
    hi = static_cast<float>(std::min(1.0, hi * f));
    return f > 0;
  }
  const double det = sw * scc - sc * sc;
  if (det <= 0 || range.wmin >= 0.0f || range.wmax <= 0.0f) return false;
  const double s = (sw * scx - sc * sx) / det, m = (sx - s * sc) / sw;
  if (!(s > 0)) return false;
  lo = static_cast<float>(std::clamp(m / range.wmin, 0.0, 1.0));
  hi = static_cast<float>(std::clamp((m + s * q.max_code()) / range.wmax, 0.0, 1.0));
  return true;
}

/// SymmetricSearch::ScaleGrid for one symmetric group (llama.cpp's make_qx_quants, ggml-quants.c,
/// with rmse_type 1): with x_m the weight of largest magnitude and n = 2^(b-1), the codes
/// l = clamp(round(-(n + k/10)·w / x_m), -n, n - 1) for k = 0, -9 .. 9, each scored by the weighted
/// error of its least-squares scale s = Σ ω w l / Σ ω l² (the best maximizes (Σ ω w l)² / Σ ω l²).
/// Returns that scale over the full range's (|x_m| / n): the ratio both clipping scales start at
/// (1.13 at most at 4 bits, where the codes grid is 7.1 steps to x_m). Sums in double (llama.cpp:
/// float). All-zero groups: 1.
inline float scale_grid_ratio(std::span<const float> w, std::span<const float> weights, int bits) {
  const float n = static_cast<float>(1 << (bits - 1));
  float extreme = 0.0f, amax = 0.0f;
  for (float x : w)
    if (std::fabs(x) > amax) amax = std::fabs(x), extreme = x;
  if (amax < 1e-15f) return 1.0f;
  double best_num = -1, best_den = 1, best_scale = 0;
  auto consider = [&](float steps) {
    const float iscale = -steps / extreme;
    double sumlx = 0, suml2 = 0;
    for (std::size_t j = 0; j < w.size(); ++j) {
      const float l = std::clamp(round_half_even(iscale * w[j]), -n, n - 1.0f);
      sumlx += static_cast<double>(weights[j]) * w[j] * l;
      suml2 += static_cast<double>(weights[j]) * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx * best_den > best_num * suml2) best_num = sumlx * sumlx, best_den = suml2, best_scale = sumlx / suml2;
  };
  consider(n);
  for (int k = -9; k <= 9; ++k)
    if (k != 0) consider(n + 0.1f * static_cast<float>(k));
  return best_num < 0 ? 1.0f : static_cast<float>(std::fabs(best_scale) * n / amax);
}

/// SymmetricSearch::DivisorGrid for one symmetric group, as SignRoundV2 searches a group's scale
/// (auto-round 0.16.1 data_type/int.py search_scales): with n = 2^(bits-1), the scales max|w| / d
/// for d = n ± 0.01·k, k = 1..90 at 2 bits (d in [1.1, 2.9]), d = n ± 0.0075·n·k, k = 1..100
/// otherwise (d in [0.25n, 1.75n]), each scored by the weighted error of its own codes (no
/// least-squares fit), the full range's (d = n) kept unless one is strictly better. `error(r)`
/// scores clipping ratio r = n / d with the quantizer's own arithmetic; ratios above `ceiling`
/// are not tried. Returns the best ratio.
template <class Error>
float divisor_grid_ratio(int bits, float ceiling, const Error& error) {
  const float n = static_cast<float>(1 << (bits - 1));
  const float step = bits == 2 ? 0.01f : 0.0075f * n;
  const int half = bits == 2 ? 90 : 100;
  float best_ratio = 1.0f;
  double best = error(1.0f);
  for (int k = -half; k <= half; ++k) {
    if (k == 0) continue;
    const float ratio = n / (n - step * static_cast<float>(k));
    if (ratio > ceiling) continue;
    const double e = error(ratio);
    if (e < best) best = e, best_ratio = ratio;
  }
  return best_ratio;
}

}  // namespace detail

/// Whether search_clip_scales searches `quantizer`'s groups with SymmetricSearch::ScaleGrid or
/// DivisorGrid (its symmetric integer groups; k-quants keep the grid): those groups, and only
/// those, may start and be tuned up to ClipSearch::ceiling.
template <WeightQuantizer Q>
bool scale_grid_searched(const Q& quantizer, const ClipSearch& search) {
  if (search.symmetric == SymmetricSearch::ClippingGrid || quantizer.symmetry() != Symmetric) return false;
  if constexpr (requires { quantizer.double_quantized(); })
    return !quantizer.double_quantized();  // a DoubleQuantizer without a second level (GGUF mixes' Q4_0 ...)
  else
    return !SuperGroupQuantizer<Q>;
}

/// Fill `min_scale` / `max_scale` (one per group of `layout`, row-major) with each group's best
/// clipping under the channel importances `importance` (one per input column; empty: all 1).
/// On the grid ratio 1 (the reference's start) is always a candidate, so the result's weighted
/// error is never above the reference start's; ScaleGrid's first candidate is the full range's
/// codes at their least-squares scale.
template <WeightQuantizer Q, class ParallelFor>
void search_clip_scales(const Q& quantizer, MatrixView weight, std::span<const float> importance, const ParallelFor& parallel_for,
                        std::span<float> min_scale, std::span<float> max_scale, const ClipSearch& search = {}) {
  const GroupLayout layout = group_layout_for(quantizer, weight.rows(), weight.cols());
  detail::require(layout.group_rows() == 1, "search_clip_scales: groups of one row only (not FP8_BLOCK's tiles)");
  detail::require(static_cast<Index>(min_scale.size()) == layout.group_count() &&
                      static_cast<Index>(max_scale.size()) == layout.group_count(),
                  "search_clip_scales: one min_scale and max_scale per group");
  detail::require(importance.empty() || static_cast<Index>(importance.size()) == weight.cols(),
                  "search_clip_scales: one importance per input column");
  detail::require(search.steps >= 1 && search.lowest > 0.0f && search.lowest < 1.0f && search.refits >= 0,
                  "search_clip_scales: ClipSearch needs steps >= 1, 0 < lowest < 1, refits >= 0");
  const bool scale_grid = scale_grid_searched(quantizer, search);
  const auto group = static_cast<std::size_t>(layout.group_size());
  const std::vector<float> zeros(group, 0.0f);
  auto ratio = [&](int i) {
    return 1.0f - (1.0f - search.lowest) * static_cast<float>(i) / static_cast<float>(search.steps);
  };
  parallel_for(layout.rows(), [&](Index r) {
    std::vector<float> out(group), omega(group);
    std::vector<std::uint8_t> codes(group);
    const float* row = weight.data() + r * layout.cols();
    double sigma2 = 0;
    if (search.magnitude_weighted) {
      for (Index j = 0; j < layout.cols(); ++j) sigma2 += static_cast<double>(row[j]) * row[j];
      sigma2 /= static_cast<double>(layout.cols());
    }
    for (Index g = 0; g < layout.groups_per_row(); ++g) {
      const auto n = static_cast<std::size_t>(layout.group_length(g));
      const auto begin = static_cast<std::size_t>(layout.group_begin(g));
      const std::span<const float> w(row + begin, n);
      for (std::size_t j = 0; j < n; ++j) {
        const double a = importance.empty() ? 1.0 : importance[begin + j];
        omega[j] = static_cast<float>(search.magnitude_weighted ? a * std::sqrt(sigma2 + static_cast<double>(w[j]) * w[j]) : a);
      }
      const std::span<const float> weights(omega.data(), n), zero_v(zeros.data(), n);
      const GroupRange range = group_range(w);
      auto error = [&](float lo, float hi) {
        return detail::clipped_group_error(quantizer, w, weights, range, lo, hi, zero_v, std::span<float>(out.data(), n));
      };
      const auto k = static_cast<std::size_t>(r * layout.groups_per_row() + g);
      if (scale_grid) {
        min_scale[k] = max_scale[k] =
            search.symmetric == SymmetricSearch::DivisorGrid
                ? detail::divisor_grid_ratio(quantizer.bits(), search.ceiling, [&](float r) { return error(r, r); })
                : std::min(detail::scale_grid_ratio(w, weights, quantizer.bits()), search.ceiling);
        continue;
      }
      float lo = 1.0f, hi = 1.0f;
      double best = error(lo, hi);
      auto consider = [&](float l, float h) {
        const double e = error(l, h);
        if (e < best) best = e, lo = l, hi = h;
      };
      for (int i = 1; i <= search.steps; ++i) consider(ratio(i), ratio(i));
      const float joint = lo;
      for (int i = 0; i <= search.steps; ++i) consider(joint, ratio(i));
      const float top = hi;
      for (int i = 0; i <= search.steps; ++i) consider(ratio(i), top);
      for (int k = 0; k < search.refits; ++k) {
        float l = lo, h = hi;
        if (!detail::least_squares_clipping(quantizer, w, weights, range, l, h, zero_v, std::span<std::uint8_t>(codes.data(), n)))
          break;
        const double before = best;
        consider(l, h);
        if (!(best < before)) break;  // no better: the fit has converged
      }
      min_scale[k] = lo;
      max_scale[k] = hi;
    }
  });
}

}  // namespace autoround
