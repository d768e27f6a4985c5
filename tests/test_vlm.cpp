// Vision-language checkpoints (Gemma 3, Gemma 4, Qwen2.5-VL, Mistral 3, LLaVA) as transformers 5.17 saves
// them: our loader finds the language model beside the vision tower and projector (its prefix,
// its config in text_config, its LM head or the tie) and computes, on a text-only input, the
// logits transformers computes with the whole vision-language model (tests/fixtures/vlm, from
// scripts/make_vlm_fixtures.py; float32, eager attention, CPU).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <string>

namespace test_vlm {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
void check_vlm(const std::string& family, const std::string& prefix, const std::string& type, bool tied) {
  const std::string dir = std::string(AUTOROUND_FIXTURES_DIR) + "/vlm/" + family;
  const SafetensorsFile fixture(dir + "/logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  const RowMatrix expected = fixture.to_float("logits");
  const LlamaModel model = load_llama(dir);
  CHECK(model.config.vision_language);
  CHECK(model.config.hf_prefix == prefix);
  CHECK(model.config.model_type == type);
  CHECK(model.config.tied_embeddings == tied);
  CHECK(model.config.rope_theta == 20000.0f);
  REQUIRE(model.blocks.size() == 2);
  const RowMatrix logits = forward_logits(model, tokens);
  REQUIRE(logits.rows() == expected.rows());
  REQUIRE(logits.cols() == expected.cols());
  const double scale = expected.cwiseAbs().maxCoeff(), worst = (logits - expected).cwiseAbs().maxCoeff();
  MESSAGE(family << ": max |logit difference| " << worst << " (max |logit| " << scale << ")");
  CHECK(worst <= 5e-6 * scale);  // float32 sums in another order over 2 blocks (the text models' bound)
}
}  // namespace

TEST_CASE("gemma3 (Gemma3ForConditionalGeneration): the language model's text-only logits") {
  check_vlm("gemma3", "language_model.model.", "gemma3_text", true);
}
TEST_CASE("gemma4 (Gemma4ForConditionalGeneration): Gemma 4's language model beside its vision tower") {
  check_vlm("gemma4", "model.language_model.", "gemma4_text", true);
}
TEST_CASE("qwen2_5_vl (Qwen2_5_VLForConditionalGeneration): Qwen2's block, mrope on text-only positions") {
  check_vlm("qwen2_5_vl", "model.", "qwen2", false);
}
TEST_CASE("mistral3 (Mistral3ForConditionalGeneration)") { check_vlm("mistral3", "language_model.model.", "mistral", false); }
TEST_CASE("llava (LlavaForConditionalGeneration)") { check_vlm("llava", "language_model.model.", "llama", false); }
}  // namespace test_vlm
