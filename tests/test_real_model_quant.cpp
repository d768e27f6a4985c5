// The main job on the real model: block-wise AutoRound beats round-to-nearest in perplexity on
// held-out text, at W2G64 and W4G128 (6 steps at the learning rate of 20 — 0.05; the default
// 1/iters would triple it —, 8 x 64 calibration tokens, one 512-token evaluation window, so that
// it runs in CI; the full settings and their numbers are in docs/accuracy.md). Measured 2026-12-07
// over that window (the same runs by the CLI: `autoround quantize ... --nsamples 8 --seqlen 64
// --batch-size 4 --iters 6 --lr 0.05 [--streams quantized] --clip-init unit|search --eval
// kjv-eval.tokens --eval-windows 1`): W4G128 RTN 19.49, tuned 17.44; W2G64 RTN 312709, tuned
// 3546; from the searched clipping RTN 456.3, tuned 112.4. (At 10 steps: 16.80, 753.2, 174.0 —
// two thirds more time for CI.)
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>

#include "support/assets.hpp"

namespace test_real_model_quant {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
struct Outcome {
  double rtn, tuned;
};
Outcome perplexities(QuantSpec spec, int iters, ActivationStreams streams = ActivationStreams::Two,
                     ClipInit clip_init = ClipInit::Unit) {
  const LlamaModel original = load_llama_gguf(test_assets::model());
  const auto calibration = read_token_file(test_assets::calibration_tokens());
  const auto evaluation = read_token_file(test_assets::evaluation_tokens());
  ModelQuantOptions options;
  options.spec = spec;
  options.nsamples = 8;
  options.seqlen = 64;
  options.tune.batch_size = 4;
  options.tune.iters = 0;
  options.streams = streams;
  options.tune.clip_init = clip_init;
  LlamaModel rtn = original;
  quantize_model(rtn, calibration, options);
  options.tune.iters = iters;
  options.tune.lr = 0.05f;
  LlamaModel tuned = original;
  quantize_model(tuned, calibration, options);
  return {perplexity(rtn, evaluation, 512, 1).perplexity, perplexity(tuned, evaluation, 512, 1).perplexity};
}
}  // namespace

TEST_CASE("W4G128 asym: AutoRound perplexity below RTN's") {
  // One stream (targets from the fp block on the quantized inputs). With the reference's two
  // streams, at these CI-sized settings (512 calibration tokens, 40 steps then, in-domain text)
  // W4G128 does not beat RTN on this asset: measured 22.96 against RTN 22.64 (20.58 without the
  // loss masks, 17.75 with one stream: docs/accuracy.md). That gap is the
  // open accuracy question; W2G64 below runs the reference's default.
  const Outcome o = perplexities({4, 128, Asymmetric}, 6, ActivationStreams::Quantized);
  MESSAGE("W4G128 asym, one stream, 6 iters, 8 x 64 calibration tokens: perplexity RTN " << o.rtn << ", AutoRound " << o.tuned);
  CHECK(o.tuned < o.rtn);
}

TEST_CASE("W2G64 asym: AutoRound far below RTN, which collapses; from the searched clipping lower still") {
  const Outcome unit = perplexities({2, 64, Asymmetric}, 6);
  MESSAGE("W2G64 asym, 6 iters, 8 x 64 calibration tokens: perplexity RTN " << unit.rtn << ", AutoRound " << unit.tuned);
  CHECK(unit.rtn > 1000);
  CHECK(unit.tuned < 0.5 * unit.rtn);
  // ClipInit::WeightedSearch against the reference's full-range start (above), same settings
  const Outcome searched = perplexities({2, 64, Asymmetric}, 6, ActivationStreams::Two, ClipInit::WeightedSearch);
  MESSAGE("from the searched clipping: RTN " << searched.rtn << ", AutoRound " << searched.tuned);
  CHECK(searched.rtn < 0.01 * unit.rtn);
  CHECK(searched.tuned < searched.rtn);
  CHECK(searched.tuned < unit.tuned);
}
}  // namespace test_real_model_quant
