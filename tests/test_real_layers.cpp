// AutoRound against round-to-nearest on real layers of a real model, with real activations:
// SmolLM2-135M block 3, calibration on Genesis, output error measured on held-out John.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <autoround/model/calibration.hpp>
#include <autoround/model/gguf_source.hpp>
#include <autoround/model/token_file.hpp>

#include "support/assets.hpp"

namespace test_real_layers {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
struct RealLayers {
  LlamaModel model = load_llama_gguf(test_assets::model());
  BlockInputs calibration = collect_block_inputs(model, read_token_file(test_assets::calibration_tokens()), 16, 128, 3);
  BlockInputs evaluation = collect_block_inputs(model, read_token_file(test_assets::evaluation_tokens()), 8, 128, 3);
};
const RealLayers& real() {
  static const RealLayers layers;
  return layers;
}

template <class Q>
void check_beats_rtn(Linear which, double max_ratio) {
  const RowMatrix& w = real().model.blocks[3][which];
  TuneOptions o;  // reference defaults: 200 iters, lr 1/200, batch 8
  o.seqlen = 128;
  const auto tuned = LayerTuner<Q>(o).tune(view(w), view(real().calibration.of(which)), gguf_name(which));
  const auto rtn = quantize_rtn(Q{}, view(w));
  const double rtn_mse = output_mse(view(w), rtn, view(real().evaluation.of(which)));
  const double tuned_mse = output_mse(view(w), tuned, view(real().evaluation.of(which)));
  const auto spec = Q{}.spec();
  MESSAGE("blk.3." << std::string(gguf_name(which)) << " W" << spec.bits << "G" << spec.group_size
                   << std::string(spec.symmetry == Symmetric ? " sym" : " asym") << ": held-out output MSE rtn " << rtn_mse
                   << ", autoround " << tuned_mse << " (ratio " << tuned_mse / rtn_mse << ", best step "
                   << tuned.stats.best_step << ", " << tuned.stats.seconds << " s)");
  CHECK(tuned_mse < max_ratio * rtn_mse);
}
}  // namespace

// Ratios measured: attn_q 0.58 / 0.48 / 0.36, ffn_down 0.81 / 0.79 / 0.54 (W4G128 asym, sym, W2G64).
TEST_CASE("W4G128 asym beats RTN on held-out activations") {
  check_beats_rtn<IntQuantizer<4, 128, Asymmetric>>(Linear::Query, 0.75);
  check_beats_rtn<IntQuantizer<4, 128, Asymmetric>>(Linear::Down, 0.9);
}
TEST_CASE("W4G128 sym beats RTN on held-out activations") {
  check_beats_rtn<IntQuantizer<4, 128, Symmetric>>(Linear::Query, 0.75);
  check_beats_rtn<IntQuantizer<4, 128, Symmetric>>(Linear::Down, 0.9);
}
TEST_CASE("W2G64 asym beats RTN by far on held-out activations") {
  check_beats_rtn<IntQuantizer<2, 64, Asymmetric>>(Linear::Query, 0.5);
  check_beats_rtn<IntQuantizer<2, 64, Asymmetric>>(Linear::Down, 0.7);
}
}  // namespace test_real_layers
