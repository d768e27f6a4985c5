#pragma once
// The knobs of AutoRound's tuning loop, with the reference's defaults (auto_round/cli RECIPES
// "default", sign_round/config.py).
#include <cstdint>

#include "../core/config.hpp"

namespace autoround {

/// Where the clipping scales start (tune/clip_search.hpp).
enum class ClipInit {
  Unit,            ///< min_scale = max_scale = 1 (the full range), as the reference
  WeightedSearch,  ///< each group's clipping of least activation-weighted rounding error
};

/// How search_clip_scales searches a symmetric group (asymmetric groups always use the grid).
enum class SymmetricSearch {
  ClippingGrid,  ///< the clipping grid, as asymmetric groups (ClipSearch::lowest / steps / refits)
  ScaleGrid,     ///< llama.cpp's make_qx_quants: 19 code grids around the full range's, each
                 ///< scored at its codes' weighted least-squares scale (may exceed the full range's)
  DivisorGrid,   ///< SignRoundV2's search_scales (the reference's enable_alg_ext): scales
                 ///< max|w| / d for d on a fine grid around 2^(bits-1), each at its own value
};

/// How search_clip_scales weighs errors and refines its grid. The defaults are the plain grid
/// search; `refits = 2` measured better without tuning (iters 0) and within the noise with it
/// (docs/accuracy.md, "Least-squares refits").
struct ClipSearch {
  float lowest = 0.5f;             ///< the smallest clipping ratio on the grid
  int steps = 20;                  ///< grid points between lowest and 1 (ratio 1 always included)
  bool magnitude_weighted = false; ///< ω_j = a_j·sqrt(σ² + w_j²) (llama.cpp's) rather than a_j
  int refits = 0;                  ///< least-squares refits of scale (and offset) to the codes
  SymmetricSearch symmetric = SymmetricSearch::ClippingGrid;
  /// The largest clipping ratio a ScaleGrid- or DivisorGrid-searched group may start at and be tuned to (the runs
  /// clamp its scales to [0, ceiling]; every other group keeps the reference's [0, 1]). Its
  /// least-squares scales reach 1.13 of the full range at 4 bits, 1.06 at 5.
  float ceiling = 1.0f;
};

struct TuneOptions {
  int iters = 200;                    ///< optimizer steps; 0 = plain round-to-nearest (RTN)
  float lr = 0.0f;                    ///< rounding lr; 0 = auto: 1/iters (2/iters for <= 3 bits, iters >= 1000)
  float minmax_lr = 0.0f;             ///< lr of the min/max clipping scales; 0 = same as lr
  bool enable_minmax_tuning = true;   ///< false freezes min_scale = max_scale = 1
  Index seqlen = 0;                   ///< input rows per calibration sample; 0 = all rows are one sample
  Index batch_size = 8;               ///< samples per step (capped at the number of samples)
  std::uint64_t seed = 42;            ///< seeds the minibatch sampler (Python's random, as the reference)
  bool use_best = true;               ///< keep the lowest-loss parameters (reference: not_use_best_mse=False)
  int dynamic_max_gap = -1;           ///< stop after this many steps without a new best; -1 = never
  /// The factor the loss is multiplied by before the backward: the reference backpropagates
  /// 1000 × the mean squared error (sign_round/quantizer.py `_scale_loss_and_backward`). SignSGD
  /// only sees signs, but the fp16 rounding of the clipping scales' gradients (IntQuantizer,
  /// DoubleQuantizer: autograd carries them through the fp16 scale) flushes to zero below
  /// 6e-8, so the factor decides which clipping scales move.
  float loss_scale = 1000.0f;
  /// The fraction of each step's largest block-output errors left out of the block loss and its
  /// gradient (SignRoundV2's loss filtering, tune/outlier_loss.hpp; the reference's 0.001 for
  /// bits < 4 under enable_alg_ext). 0: the plain mean squared error.
  double outlier_fraction = 0.0;
  ClipInit clip_init = ClipInit::Unit;  ///< where min_scale / max_scale start
  ClipSearch clip_search;               ///< how ClipInit::WeightedSearch searches

  /// The learning rate the reference picks when none is given.
  float rounding_lr(int bits) const {
    if (lr > 0.0f) return lr;
    if (iters <= 0) return 0.0f;
    return (iters >= 1000 && bits <= 3 ? 2.0f : 1.0f) / static_cast<float>(iters);
  }
  float clipping_lr(int bits) const { return minmax_lr > 0.0f ? minmax_lr : rounding_lr(bits); }
};

}  // namespace autoround
