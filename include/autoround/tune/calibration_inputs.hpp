#pragma once
// Validation of a layer's calibration inputs, shared by the CPU and GPU layer tuning runs:
// feature count, finiteness, and a whole number of samples of seqlen rows. Returns seqlen.
#include <string>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "tunable_weight.hpp"
#include "tune_options.hpp"

namespace autoround::detail {

inline Index check_calibration_inputs(const TuneOptions& options, MatrixView weight, MatrixView inputs,
                                      const MatrixView* fp_inputs, const std::string& name) {
  detail::require(inputs.cols() == weight.cols(),
                  name + ": calibration inputs have " + std::to_string(inputs.cols()) +
                      " features but the weight has " + std::to_string(weight.cols()) + " input features");
  detail::require(inputs.rows() > 0, name + ": no calibration inputs");
  detail::require_finite(inputs, name + ".inputs");
  if (fp_inputs) {
    detail::require(fp_inputs->rows() == inputs.rows() && fp_inputs->cols() == inputs.cols(),
                    name + ": full-precision inputs must have the shape of the quantized-layer inputs");
    detail::require_finite(*fp_inputs, name + ".fp_inputs");
  }
  const Index seqlen = options.seqlen > 0 ? options.seqlen : inputs.rows();
  detail::require(inputs.rows() % seqlen == 0, name + ": " + std::to_string(inputs.rows()) +
                                                   " input rows are not a whole number of samples of seqlen = " +
                                                   std::to_string(seqlen));
  return seqlen;
}

}  // namespace autoround::detail
