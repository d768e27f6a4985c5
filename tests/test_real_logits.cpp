// Our float32 forward pass of the real model against an independent implementation: logits of
// Hugging Face transformers' LlamaForCausalLM on the same weights and tokens
// (tests/fixtures/smollm2_logits.safetensors, scripts/make_logits_fixture.py).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <cmath>

#include "support/assets.hpp"

namespace test_real_logits {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("logits equal transformers' on the real model, all 64 positions") {
  const SafetensorsFile fixture(AUTOROUND_FIXTURES_DIR "/smollm2_logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  const auto ids = fixture.view_as<std::int32_t>("ids", Dtype::I32);
  const auto expected = fixture.view_as<float>("logits", Dtype::F32);
  const auto lse = fixture.view_as<double>("logsumexp", Dtype::F64);
  const auto argmax = fixture.view_as<std::int32_t>("argmax", Dtype::I32);
  const LlamaModel model = load_llama_gguf(test_assets::model());
  const RowMatrix logits = forward_logits(model, tokens);
  REQUIRE(logits.rows() == static_cast<Index>(tokens.size()));
  double worst = 0, worst_lse = 0;
  int argmax_agree = 0;
  const std::size_t per_position = ids.size() / tokens.size();
  for (Index p = 0; p < logits.rows(); ++p) {
    for (std::size_t k = 0; k < per_position; ++k) {
      const std::size_t at = static_cast<std::size_t>(p) * per_position + k;
      worst = std::max(worst, std::fabs(static_cast<double>(logits(p, ids[at])) - expected[at]));
    }
    const double max = logits.row(p).maxCoeff();
    const double ours_lse = max + std::log((logits.row(p).array().cast<double>() - max).exp().sum());
    worst_lse = std::max(worst_lse, std::fabs(ours_lse - lse[static_cast<std::size_t>(p)]));
    Index best;
    logits.row(p).maxCoeff(&best);
    argmax_agree += best == argmax[static_cast<std::size_t>(p)];
  }
  MESSAGE("max |logit difference| " << worst << ", max |log-sum-exp difference| " << worst_lse << ", arg-max agrees at "
                                    << argmax_agree << " / " << logits.rows());
  CHECK(worst < 5e-4);  // float32 sums in another order over 30 blocks; logits are O(10) (measured 5.5e-5)
  CHECK(worst_lse < 5e-4);
  CHECK(argmax_agree == logits.rows());
}
}  // namespace test_real_logits
