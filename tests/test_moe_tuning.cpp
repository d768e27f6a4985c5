// Tuning mixture-of-experts blocks on the CPU (issue #25): BlockTuningRun over a block's linear
// slots (the attention's four and every expert's three, tuned in one block loss), the report's
// expert counts, and whole models through quantize_model and the streaming loop. Random weights:
// these test the mechanics (slot bookkeeping, routing, what is kept), not accuracy.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <random>
#include <vector>

#include "support/block_error.hpp"
#include "support/memory_source.hpp"
#include "support/random_model.hpp"

namespace test_moe_tuning {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {

using test_models::random_matrix;
using Run = BlockTuningRun<DynamicIntQuantizer, SignSGD<LinearDecay>, Cpu>;

LlamaConfig moe_config() {
  LlamaConfig c;
  c.hidden = 64, c.heads = 4, c.kv_heads = 2, c.head_dim = 16, c.intermediate = 64, c.vocab = 48, c.layers = 2;
  c.model_type = "qwen2_moe";
  return c;
}

// A dense random block whose MLP becomes 4 experts (intermediate 64, top 2, renormalized) and,
// with `shared`, a gated shared expert (Qwen2-MoE); `starve_last`: see random_moe_block.
LlamaBlock moe_block(const LlamaConfig& c, std::mt19937& rng, bool shared, bool starve_last) {
  return test_models::random_moe_block(c, rng, shared, starve_last);
}

// Samples whose channel 0 is a large positive constant: after the ffn norm it dominates the
// router's logits, so the starved expert's logit is far below the others' at every token.
std::vector<RowMatrix> samples(const LlamaConfig& c, int count, Index seqlen, std::mt19937& rng, bool starve_last) {
  std::vector<RowMatrix> out;
  for (int s = 0; s < count; ++s) {
    out.push_back(random_matrix(seqlen, c.hidden, 1.0f, rng));
    if (starve_last) out.back().col(0).setConstant(8.0f);
  }
  return out;
}

using test_models::block_error;

}  // namespace

TEST_CASE("linear slots: a dense block's seven in Linear order; a MoE block's attention, experts, shared expert") {
  const LlamaConfig c = moe_config();
  std::mt19937 rng(1);
  const LlamaBlock dense = test_models::random_block(c, false, rng);
  const auto dense_slots = linear_slots(dense);
  REQUIRE(dense_slots.size() == 7);
  for (std::size_t i = 0; i < 7; ++i) {
    CHECK(dense_slots[i] == LinearSlot{all_linears[i], LinearSlot::own});
    CHECK(&slot_weight(dense, dense_slots[i]) == &dense[all_linears[i]]);
  }
  const LlamaBlock moe = moe_block(c, rng, true, false);
  const auto slots = linear_slots(moe);
  REQUIRE(slots.size() == 4 + 4 * 3 + 3);
  CHECK(hf_name(slots[3], c.model_type) == "self_attn.o_proj");
  CHECK(hf_name(slots[4], c.model_type) == "mlp.experts.0.gate_proj");
  CHECK(hf_name(slots[4 + 3 * 3 + 2], c.model_type) == "mlp.experts.3.down_proj");
  CHECK(hf_name(slots[16], c.model_type) == "mlp.shared_expert.gate_proj");
  CHECK(hf_name(slots[18], "deepseek_v3") == "mlp.shared_experts.down_proj");
  CHECK(&slot_weight(moe, slots[4 + 3 * 2 + 1]) == &moe.moe->weights.experts[2].up);
  CHECK(&slot_weight(moe, slots[18]) == &moe.moe->weights.shared->down);
  CHECK(layer_name(5, slots[7], c.model_type) == "model.layers.5.mlp.experts.1.gate_proj");
  for (std::size_t i = 4; i < slots.size(); ++i)  // the index helper agrees with the list
    CHECK(expert_slot_index(slots[i].expert == LinearSlot::shared ? 4 : slots[i].expert, slots[i].role) == i);
}

TEST_CASE("a MoE block tunes its attention and every expert in one block loss; its results compute its kept loss") {
  const LlamaConfig c = moe_config();
  std::mt19937 rng(2);
  const LlamaBlock block = moe_block(c, rng, true, false);
  const std::vector<RowMatrix> inputs = samples(c, 8, 32, rng, false);
  const auto slots = linear_slots(block);
  const Run::LayerQuantizers quantizers(slots.size(), DynamicIntQuantizer(QuantSpec{4, 32, Asymmetric}));
  TuneOptions o;
  o.iters = 40;
  o.batch_size = 4;
  Run run(o, quantizers, SignSGD<LinearDecay>{}, Cpu{}, block, c, std::span<const RowMatrix>(inputs), "model.layers.0");
  REQUIRE(run.slots() == slots);
  while (run.running()) run.step();
  CHECK(run.stats().best_loss < 0.8 * run.stats().rtn_loss);  // tuning lowers the block error
  // every token went to two experts in every step
  Index routed = 0;
  for (Index n : run.expert_tokens()) routed += n;
  CHECK(routed == static_cast<Index>(run.stats().steps_run) * 4 * 32 * 2);
  const Run::LayerResults results = run.result();
  REQUIRE(results.size() == slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i) {
    CAPTURE(hf_name(slots[i]));
    REQUIRE(results[i].has_value());
    CHECK(results[i]->rows() == slot_weight(block, slots[i]).rows());
    CHECK(results[i]->cols() == slot_weight(block, slots[i]).cols());
  }
  // The results, put into the block slot by slot, give the run's own loss at its kept parameters
  // over every sample (evaluate): a slot mapped to the wrong expert would not.
  const double kept = run.evaluate();
  CHECK(block_error(block, c, results, inputs) == doctest::Approx(kept).epsilon(1e-4));
  // and lower than round-to-nearest of every slot
  Run::LayerResults rtn(slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i) rtn[i] = quantize_rtn(*quantizers[i], view(slot_weight(block, slots[i])));
  CHECK(kept < block_error(block, c, rtn, inputs));
}

TEST_CASE("an expert no calibration token reaches keeps its round-to-nearest start, and is counted") {
  const LlamaConfig c = moe_config();
  std::mt19937 rng(3);
  LlamaModel model;
  model.config = c;
  model.config.layers = 1;  // a block after it would see the starved block's large outputs: no control over its routing
  model.embedding = random_matrix(c.vocab, c.hidden, 1.0f, rng);
  model.embedding.col(0).setConstant(8.0f);  // see samples(): expert 3 is never chosen
  model.blocks.push_back(moe_block(c, rng, false, true));
  model.final_norm = Eigen::VectorXf::Ones(c.hidden);
  model.output = random_matrix(c.vocab, c.hidden, 0.2f, rng);
  model.config.tied_embeddings = false;
  const LlamaModel original = model;
  const std::vector<TokenSequence> calibration = test_models::random_samples(6, 24, c.vocab, rng);
  ModelQuantOptions options;
  options.spec = {4, 32, Asymmetric};
  options.tune.iters = 20;
  options.tune.batch_size = 3;
  std::vector<BlockReport> reports;
  const auto results = quantize_model(model, std::span<const TokenSequence>(calibration), options,
                                      [&](const BlockReport& r, Index) { reports.push_back(r); });
  REQUIRE(reports.size() == 1);
  const auto slots = linear_slots(original.blocks[0]);
  for (Index b = 0; b < 1; ++b) {
    CAPTURE(b);
    const BlockReport& r = reports[static_cast<std::size_t>(b)];
    CHECK(r.experts == 4);
    CHECK(r.experts_unreached == 1);
    CHECK(r.fewest_expert_tokens > 0);
    CHECK(r.quantized_layers == static_cast<int>(slots.size()));
    const LlamaBlock& start = original.blocks[static_cast<std::size_t>(b)];
    for (std::size_t i = 0; i < slots.size(); ++i) {
      if (!slots[i].routed()) continue;
      CAPTURE(hf_name(slots[i]));
      const auto& tuned = *results[static_cast<std::size_t>(b)][i];
      const auto rtn = quantize_rtn(tuned.quantizer, view(slot_weight(start, slots[i])));
      if (slots[i].expert == 3) {  // never reached: exactly round-to-nearest, as the reference leaves it
        CHECK(tuned.codes == rtn.codes);
        CHECK(tuned.scales == rtn.scales);
        CHECK(tuned.zeros == rtn.zeros);
      } else {
        CHECK(tuned.codes != rtn.codes);  // reached: tuned
      }
      // quantize_model leaves the model dequantized, the experts included
      CHECK(slot_weight(model.blocks[static_cast<std::size_t>(b)], slots[i]) == tuned.dequantize());
    }
  }
}

TEST_CASE("a MoE model streamed block by block gives quantize_model's results") {
  const LlamaConfig c = moe_config();
  std::mt19937 rng(4);
  LlamaModel model;
  model.config = c;
  model.embedding = random_matrix(c.vocab, c.hidden, 1.0f, rng);
  for (Index b = 0; b < c.layers; ++b) model.blocks.push_back(moe_block(c, rng, b == 1, false));
  model.final_norm = Eigen::VectorXf::Ones(c.hidden);
  const std::vector<TokenSequence> calibration = test_models::random_samples(4, 16, c.vocab, rng);
  ModelQuantOptions options;
  options.spec = {4, 32, Symmetric};
  options.tune.iters = 6;
  options.tune.batch_size = 2;
  options.tune.clip_init = ClipInit::WeightedSearch;  // the importance of each expert over its own tokens
  const test_models::MemorySource source{&model};
  std::vector<LayerResults<>> streamed;
  quantize_model_streaming(source, std::span<const TokenSequence>(calibration), options,
                           [&](Index b, const LlamaBlock& block, const LayerResults<>& results) {
                             CHECK(block.moe.has_value());
                             // the sink's block holds its quantized layers released (results hold them)
                             for (const LinearSlot& s : linear_slots(block)) CHECK(slot_weight(block, s).size() == 0);
                             CHECK(results.size() == linear_slots(model.blocks[static_cast<std::size_t>(b)]).size());
                             streamed.push_back(results);
                           });
  LlamaModel copy = model;
  const auto whole = quantize_model(copy, std::span<const TokenSequence>(calibration), options);
  REQUIRE(streamed.size() == whole.size());
  for (std::size_t b = 0; b < whole.size(); ++b) {
    REQUIRE(streamed[b].size() == whole[b].size());
    for (std::size_t i = 0; i < whole[b].size(); ++i) {
      REQUIRE(streamed[b][i].has_value() == whole[b][i].has_value());
      if (whole[b][i]) CHECK(streamed[b][i]->codes == whole[b][i]->codes);
    }
  }
}

TEST_CASE("per-layer overrides reach experts by their Hugging Face names") {
  const LlamaConfig c = moe_config();
  std::mt19937 rng(5);
  const LlamaBlock block = moe_block(c, rng, true, false);
  ModelQuantOptions options;
  options.spec = {4, 32, Asymmetric};
  options.overrides = {{R"(mlp\.experts\.2\.)", std::nullopt}, {R"(mlp\.shared_expert\.down_proj)", QuantSpec{8, 32, Symmetric}}};
  BlockReport report;
  const auto quantizers = detail::block_quantizers<DynamicIntQuantizer>(options, block, 7, report, c.model_type);
  const auto slots = linear_slots(block);
  REQUIRE(quantizers.size() == slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i) {
    CAPTURE(hf_name(slots[i], c.model_type));
    CHECK(quantizers[i].has_value() == (slots[i].expert != 2));
    if (slots[i].expert == LinearSlot::shared && slots[i].role == Linear::Down) CHECK(quantizers[i]->bits() == 8);
  }
  CHECK(report.quantized_layers == static_cast<int>(slots.size()) - 3);
}

TEST_CASE("a MoE block of one expert tunes as the dense block whose MLP is that expert") {
  // top-1 of one expert routes every token to it with weight 1: the block computes the dense
  // block's function, so the two runs see the same losses and gradients up to the order of float
  // sums (the dense MLP adds its GEMM into the residual, the expert adds its output after), and
  // end with nearly the same codes; a gradient given to the wrong projection would not.
  const LlamaConfig c = moe_config();
  std::mt19937 rng(6);
  const LlamaBlock dense = test_models::random_block(c, false, rng);
  LlamaBlock moe = dense;
  MoeFeedForward ffn;
  ffn.spec.top_k = 1;
  ffn.weights.router = random_matrix(1, c.hidden, 0.3f, rng);
  ffn.weights.experts.push_back({dense[Linear::Gate], dense[Linear::Up], dense[Linear::Down], {}, {}, {}});
  moe.moe = ffn;
  for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) moe[l] = RowMatrix();
  const std::vector<RowMatrix> inputs = samples(c, 6, 32, rng, false);
  TuneOptions o;
  o.iters = 30;
  o.batch_size = 3;
  const Run::LayerQuantizers quantizers(7, DynamicIntQuantizer(QuantSpec{2, 32, Asymmetric}));
  Run a(o, quantizers, SignSGD<LinearDecay>{}, Cpu{}, dense, c, std::span<const RowMatrix>(inputs), "dense");
  Run b(o, quantizers, SignSGD<LinearDecay>{}, Cpu{}, moe, c, std::span<const RowMatrix>(inputs), "moe");
  while (a.running()) CHECK(b.step() == doctest::Approx(a.step()).epsilon(1e-4));
  const auto x = a.result(), y = b.result();
  for (std::size_t i = 0; i < 7; ++i) {
    CAPTURE(i);
    std::size_t same = 0;
    for (std::size_t k = 0; k < x[i]->codes.size(); ++k) same += x[i]->codes[k] == y[i]->codes[k];
    CHECK(static_cast<double>(same) >= 0.99 * static_cast<double>(x[i]->codes.size()));
  }
}
}  // namespace test_moe_tuning
