// quantize_model's two activation streams (the reference's default): block b is scored against
// the full-precision block on the full-precision model's own activations, while its quantized
// layers see what the quantized blocks before it compute. Checked on a small random model with
// round-to-nearest (iters = 0, whose report is the block loss under the rounded weights)
// against losses computed here from plain forwards of the unquantized and quantized models.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <random>

#include "support/random_model.hpp"

namespace test_streams {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
using test_models::small_random_model;

namespace {

// mean over every element of (mask · (a − b))², the last position of each sample masked
double masked_loss(const std::vector<RowMatrix>& a, const std::vector<RowMatrix>& b) {
  double sum = 0, count = 0;
  for (std::size_t s = 0; s < a.size(); ++s) {
    const RowMatrix d = a[s] - b[s];
    sum += static_cast<double>(d.topRows(d.rows() - 1).squaredNorm());
    count += static_cast<double>(d.size());
  }
  return sum / count;
}

std::vector<RowMatrix> forward(const LlamaBlock& block, const LlamaConfig& c, std::vector<RowMatrix> x) {
  for (RowMatrix& h : x) block_forward(block, c, h);
  return x;
}

}  // namespace

TEST_CASE("two streams: targets from the full-precision model, inputs from the quantized one") {
  std::mt19937 rng(5);
  const LlamaModel model = small_random_model(rng);
  std::vector<std::int32_t> tokens(6 * 20);
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % 40u);
  const auto windows = consecutive_windows(tokens, 6, 20);
  ModelQuantOptions options;
  options.spec = {2, 32, Asymmetric};
  options.nsamples = 6;
  options.seqlen = 20;
  options.tune.iters = 0;

  std::vector<double> block1_losses;
  for (ActivationStreams streams : {ActivationStreams::Two, ActivationStreams::Quantized, ActivationStreams::FullPrecision}) {
    CAPTURE(static_cast<int>(streams));
    options.streams = streams;
    LlamaModel quantized = model;
    std::vector<BlockReport> reports;
    const auto results = quantize_model(quantized, tokens, options, [&](const BlockReport& r, Index) { reports.push_back(r); });
    REQUIRE(reports.size() == 2);
    // the rounded weights are what the pipeline left in `quantized`; the unquantized model is `model`
    std::vector<RowMatrix> embedded;
    for (const auto& w : windows) embedded.push_back(embed(model, w));
    const auto fp1 = forward(model.blocks[0], model.config, embedded);         // fp stream into block 1
    const auto q1 = forward(quantized.blocks[0], model.config, embedded);      // quantized stream into block 1
    CHECK(results[1][static_cast<std::size_t>(Linear::Down)].has_value());
    const double block0 = masked_loss(forward(quantized.blocks[0], model.config, embedded),
                                      forward(model.blocks[0], model.config, embedded));
    double block1 = 0;
    if (streams == ActivationStreams::Two)
      block1 = masked_loss(forward(quantized.blocks[1], model.config, q1), forward(model.blocks[1], model.config, fp1));
    else if (streams == ActivationStreams::Quantized)
      block1 = masked_loss(forward(quantized.blocks[1], model.config, q1), forward(model.blocks[1], model.config, q1));
    else
      block1 = masked_loss(forward(quantized.blocks[1], model.config, fp1), forward(model.blocks[1], model.config, fp1));
    CHECK(reports[0].stats.rtn_loss == doctest::Approx(block0).epsilon(1e-5));
    CHECK(reports[1].stats.rtn_loss == doctest::Approx(block1).epsilon(1e-5));
    block1_losses.push_back(reports[1].stats.rtn_loss);
  }
  // the three modes give block 1 different losses, so each check above tells them apart
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = i + 1; j < 3; ++j) CHECK(std::abs(block1_losses[i] - block1_losses[j]) > 0.01 * block1_losses[i]);
}

TEST_CASE("loss masks: the last position, and padding by the pad id or by trailing repeats") {
  const std::vector<TokenSequence> samples{{5, 6, 7, 8}, {5, 2, 2, 9}, {5, 6, 6, 6}};
  const auto with_pad = loss_masks(samples, 2);
  CHECK(with_pad[0] == LossMask{1, 1, 1, 0});
  CHECK(with_pad[1] == LossMask{1, 0, 0, 0});
  CHECK(with_pad[2] == LossMask{1, 1, 1, 0});
  const auto without = loss_masks(samples, std::nullopt);
  CHECK(without[1] == LossMask{1, 1, 1, 0});
  CHECK(without[2] == LossMask{1, 0, 0, 0});  // 6 6 6 at the end: repeats of the last token
}
}  // namespace test_streams
