#pragma once
// The mean squared difference between a block with a run's results put in (dequantized, slot by
// slot) and the block in full precision, over calibration inputs: what the run's own evaluate()
// reports for its kept parameters, so a slot mapped to the wrong weight shows.
#include <autoround/tune/model_quantizer.hpp>
#include <vector>

namespace test_models {

using namespace autoround;

template <WeightQuantizer Q>
double block_error(const LlamaBlock& block, const LlamaConfig& c, const LayerResults<Q>& results, const std::vector<RowMatrix>& inputs) {
  LlamaBlock quantized = block;
  detail::dequantize_into(quantized, results);
  double sum = 0, count = 0;
  for (const RowMatrix& x : inputs) {
    RowMatrix a = x, b = x;
    block_forward(block, c, a);
    block_forward(quantized, c, b);
    sum += static_cast<double>((a - b).squaredNorm());
    count += static_cast<double>(a.size());
  }
  return sum / count;
}

}  // namespace test_models
