// SignRoundV2's loss filtering (tune/outlier_loss.hpp): which errors are dropped, by hand, and a
// block tuning step's loss against the filtered loss computed here from the dequantized block.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include <autoround/backend/cpu.hpp>
#include <autoround/optimizer/sign_sgd.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/tune/block_tuning_run.hpp>
#include <autoround/tune/outlier_loss.hpp>

#include "support/random_model.hpp"

namespace test_outlier_loss {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("outlier_count: max(1, floor(n * fraction)), none at fraction 0") {
  CHECK(outlier_count(2359296, 0.001) == 2359);  // 8 x 512 x 576: a SmolLM2 minibatch
  CHECK(outlier_count(999, 0.001) == 1);          // at least one
  CHECK(outlier_count(10, 0.25) == 2);
  CHECK(outlier_count(10, 0.0) == 0);
  CHECK(outlier_count(0, 0.001) == 0);
}

TEST_CASE("drop_largest_errors zeroes the largest magnitudes, either sign, and ties at the threshold") {
  std::vector<float> scratch;
  std::vector<float> d{0.1f, -5.0f, 0.2f, 3.0f, -0.3f, 0.05f, 2.0f, -1.0f, 0.0f, 0.4f};
  CHECK(drop_largest_errors(d, 0.25, scratch) == 2);  // k = 2: -5 and 3
  CHECK(d == std::vector<float>{0.1f, 0.0f, 0.2f, 0.0f, -0.3f, 0.05f, 2.0f, -1.0f, 0.0f, 0.4f});
  CHECK(drop_largest_errors(d, 0.001, scratch) == 1);  // k = 1: the 2 left
  CHECK(d[6] == 0.0f);
  std::vector<float> tied{1.0f, -1.0f, 0.5f};
  CHECK(drop_largest_errors(tied, 0.34, scratch) == 2);  // k = 1, but -1 ties with 1
  CHECK(tied == std::vector<float>{0.0f, 0.0f, 0.5f});
  std::vector<float> kept{1.0f, 2.0f};
  CHECK(drop_largest_errors(kept, 0.0, scratch) == 0);
  CHECK(kept == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("a block step's loss with outlier_fraction: the minibatch's largest errors out, the mean over all elements") {
  std::mt19937 rng(7);
  const LlamaModel model = test_models::small_random_model(rng, 1);
  std::normal_distribution<float> normal;
  std::vector<RowMatrix> inputs;
  for (int s = 0; s < 4; ++s) {
    RowMatrix x(16, model.config.hidden);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
    inputs.push_back(x);
  }
  using Run = BlockTuningRun<DynamicIntQuantizer, SignSGD<LinearDecay>, Cpu>;
  Run::LayerQuantizers quantizers(all_linears.size());
  for (auto& q : quantizers) q = DynamicIntQuantizer(QuantSpec{2, 32, Symmetric});
  TuneOptions options;
  options.iters = 1;
  options.batch_size = 4;  // the step's minibatch is every sample
  options.outlier_fraction = 0.01;
  Run filtered(options, quantizers, {}, {}, model.blocks[0], model.config, std::span<const RowMatrix>(inputs), "block");
  options.outlier_fraction = 0.0;
  Run plain(options, quantizers, {}, {}, model.blocks[0], model.config, std::span<const RowMatrix>(inputs), "block");

  // by hand: the block with every linear's round-to-nearest weights against the float block
  LlamaBlock quantized = model.blocks[0];
  const auto start = filtered.result();  // before any step: the round-to-nearest start
  for (std::size_t i = 0; i < all_linears.size(); ++i) quantized[all_linears[i]] = start[i]->dequantize();
  std::vector<float> errors;
  for (const RowMatrix& x : inputs) {
    RowMatrix target = x, out = x;
    block_forward(model.blocks[0], model.config, target);
    block_forward(quantized, model.config, out);
    for (Index i = 0; i < out.size(); ++i) errors.push_back(out.data()[i] - target.data()[i]);
  }
  const std::size_t n = errors.size(), k = n / 100;
  std::vector<float> magnitudes(errors.size());
  std::transform(errors.begin(), errors.end(), magnitudes.begin(), [](float e) { return std::fabs(e); });
  std::sort(magnitudes.begin(), magnitudes.end(), std::greater<float>());
  double all = 0, kept = 0;
  for (std::size_t i = 0; i < n; ++i) all += static_cast<double>(magnitudes[i]) * magnitudes[i];
  for (std::size_t i = k; i < n; ++i) kept += static_cast<double>(magnitudes[i]) * magnitudes[i];
  CHECK(magnitudes[k - 1] > magnitudes[k]);  // no tie at the threshold in this draw
  const double plain_loss = plain.step(), filtered_loss = filtered.step();
  CHECK(plain_loss == doctest::Approx(all / static_cast<double>(n)).epsilon(1e-4));
  CHECK(filtered_loss == doctest::Approx(kept / static_cast<double>(n)).epsilon(1e-4));
  CHECK(filtered_loss < 0.97 * plain_loss);  // the largest 1% hold more than 3% of the squared error (Gaussian: 8%)
  MESSAGE("W2G32 sym block loss: " << plain_loss << ", the largest 1% of errors left out: " << filtered_loss);
}
}  // namespace test_outlier_loss
