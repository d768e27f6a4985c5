#pragma once
// The reference's best-step rule, shared by the layer and block tuning runs: record each step's
// loss (measured before that step's update); the parameters of the lowest loss are the result
// (with use_best = false, those of the last step, before its update); dynamic_max_gap stops the
// loop after that many steps without a new best.
#include <limits>

#include "../quantizer/quantized_weight.hpp"
#include "tune_options.hpp"

namespace autoround {

class BestStepTracker {
 public:
  explicit BestStepTracker(const TuneOptions& options) : options_(options) {}

  /// Record the loss of the next step; true when the current parameters must be kept.
  /// Steps are ranked by loss / `normalizer`: the reference ranks a masked block loss divided by
  /// the minibatch's count of unmasked tokens (which varies with the minibatch when samples
  /// hold padding); the stats keep the loss itself.
  bool record(double loss, double normalizer = 1.0) {
    const int step = stats_.steps_run;
    if (step == 0) stats_.rtn_loss = loss;
    stats_.steps_run = step + 1;
    bool keep = false;
    if (loss / normalizer < best_) {
      best_ = loss / normalizer;
      stats_.best_loss = loss;
      stats_.best_step = step;
      keep = options_.use_best;
    }
    return keep || (!options_.use_best && step == options_.iters - 1);
  }

  /// Whether another step should run.
  bool running() const {
    if (stats_.steps_run >= options_.iters) return false;
    return !(options_.use_best && options_.dynamic_max_gap > 0 && stats_.steps_run > 0 &&
             stats_.steps_run - 1 - stats_.best_step >= options_.dynamic_max_gap);
  }

  const TuningStats& stats() const { return stats_; }
  int next_step() const { return stats_.steps_run; }

 private:
  TuneOptions options_;
  double best_ = std::numeric_limits<double>::max();
  TuningStats stats_;
};

}  // namespace autoround
