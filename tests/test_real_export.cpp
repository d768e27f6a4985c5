// Written formats read back: the real model (its first 6 blocks: test_assets::short_model) is
// quantized (a few tuning steps), exported as auto_round, auto_gptq, auto_awq and GGUF, and each
// output is loaded again (our Hugging Face and GGUF loaders). Every quantized linear layer must come back bit-identical to the in-memory
// quantized model (after undoing GGUF's q/k row order), and perplexity must agree.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <filesystem>
#include <map>

#include "support/assets.hpp"

namespace test_real_export {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {
struct Quantized {
  LlamaModel model;
  std::vector<BlockResults> layers;
  ModelQuantOptions options;
  double ppl = 0;
};

Quantized quantize(QuantSpec spec) {
  Quantized q{load_llama_gguf(test_assets::short_model()), {}, {}, 0};
  q.options.spec = spec;
  q.options.nsamples = 8;
  q.options.seqlen = 64;
  q.options.tune.batch_size = 4;
  q.options.tune.iters = 2;
  q.options.tune.lr = 1.0f / 200;  // two steps at the default's rate (1/iters = 0.5 would wreck the codes)
  q.layers = quantize_model(q.model, read_token_file(test_assets::calibration_tokens()), q.options);
  q.ppl = perplexity(q.model, read_token_file(test_assets::evaluation_tokens()), 512, 2).perplexity;
  return q;
}

/// Linear layers of `back` equal to those of `q` (an HF checkpoint holds q/k in half-split order).
void check_same_linears(const Quantized& q, const LlamaModel& back, bool hf_layout) {
  int different = 0;
  for (Index b = 0; b < q.model.config.layers; ++b)
    for (Linear l : all_linears) {
      const RowMatrix& ours = q.model.blocks[static_cast<std::size_t>(b)][l];
      const bool permuted = hf_layout && (l == Linear::Query || l == Linear::Key);
      const RowMatrix expected = permuted ? permute_rows(ours, hf_rows_from_gguf(ours.rows(), q.model.config.head_dim)) : ours;
      different += expected != back.blocks[static_cast<std::size_t>(b)][l];
    }
  CHECK(different == 0);
}

double ppl_of(const LlamaModel& m) { return perplexity(m, read_token_file(test_assets::evaluation_tokens()), 512, 2).perplexity; }
}  // namespace

TEST_CASE("W4G32 sym: auto_round, auto_gptq, auto_awq and gguf:q4_0 read back bit for bit") {
  const Quantized q = quantize({4, 32, Symmetric});
  const GgufFile source(test_assets::short_model());
  const QuantizedLlama view{q.model, q.layers, q.options};
  const fs::path dir = fs::temp_directory_path() / "autoround_test_export";
  fs::remove_all(dir);
  for (HfFormat f : {HfFormat::AutoRound, HfFormat::AutoGptq, HfFormat::AutoAwq}) {
    const std::string name = format_name(f);
    CAPTURE(name);
    const fs::path out = dir / format_name(f);
    fs::create_directories(out);
    CHECK(export_hf_checkpoint(view, f, out, {&source, {}}).empty());  // every layer fits at G32
    const LlamaModel back = load_llama(out);
    check_same_linears(q, back, true);
    const double ppl = ppl_of(back);
    MESSAGE(name << ": perplexity in memory " << q.ppl << ", read back " << ppl);
    // norms and embeddings stored as fp16: 0.21% on the cut model, whose perplexity (~7e6) magnifies
    // any change of its logits (the linear layers are checked bit for bit above)
    CHECK(ppl == doctest::Approx(q.ppl).epsilon(5e-3));
  }
  const fs::path gguf = dir / "model-q4_0.gguf";
  const auto choices = export_gguf_model(view, source, gguf_scheme("q4_0"), gguf);
  std::size_t tuned = 0;
  for (const auto& c : choices) tuned += c.tuned;
  CHECK(tuned == static_cast<std::size_t>(7 * q.model.config.layers));
  const LlamaModel back = load_llama(gguf);
  check_same_linears(q, back, false);
  const double ppl = ppl_of(back);
  MESSAGE("gguf:q4_0: perplexity in memory " << q.ppl << ", read back " << ppl);
  CHECK(ppl == doctest::Approx(q.ppl).epsilon(2e-3));  // token_embd re-encoded as Q8_0
  fs::remove_all(dir);
}

TEST_CASE("W4G32 asym: auto_round (zero points stored) and gguf:q4_1 read back") {
  const Quantized q = quantize({4, 32, Asymmetric});
  const GgufFile source(test_assets::short_model());
  const QuantizedLlama view{q.model, q.layers, q.options};
  const fs::path dir = fs::temp_directory_path() / "autoround_test_export_asym";
  fs::remove_all(dir);
  fs::create_directories(dir / "auto_round");
  export_hf_checkpoint(view, HfFormat::AutoRound, dir / "auto_round", {&source, {}});
  check_same_linears(q, load_llama(dir / "auto_round"), true);
  export_gguf_model(view, source, gguf_scheme("q4_1"), dir / "model-q4_1.gguf");
  const double ppl = ppl_of(load_llama(dir / "model-q4_1.gguf"));  // m = -scale * zero rounded to fp16
  MESSAGE("gguf:q4_1: perplexity in memory " << q.ppl << ", read back " << ppl);
  CHECK(ppl == doctest::Approx(q.ppl).epsilon(5e-3));
  fs::remove_all(dir);
}

TEST_CASE("gguf:q4_k_m tuned: every linear layer tuned for its block type and written with its tuned values") {
  // As the reference tunes gguf:q4_k_m: Q4_K layers through int_asym_dq, Q6_K ones (attn_v /
  // ffn_down of the use_more_bits layers) through int_sym_dq, and the rows that cannot hold
  // k-quants (576 = 2.25 x 256 here) through the fallback type's scheme (Q5_0, Q8_0).
  const GgufScheme scheme = gguf_scheme("q4_k_m");
  LlamaModel model = load_llama_gguf(test_assets::short_model());
  ModelQuantOptions options;
  options.overrides = gguf_tuning_overrides(scheme, model);
  REQUIRE(needs_double_quant(options.overrides));
  options.nsamples = 8;
  options.seqlen = 64;
  options.tune.batch_size = 4;
  options.tune.iters = 2;
  const auto layers = quantize_model<SignSGD<LinearDecay>, Cpu, DynamicDoubleQuantizer>(
      model, read_token_file(test_assets::calibration_tokens()), options);
  const GgufFile source(test_assets::short_model());
  const QuantizedLlama view{model, layers, options};
  const fs::path path = fs::temp_directory_path() / "autoround_test_export_q4_k_m.gguf";
  const auto choices = export_gguf_model(view, source, scheme, path);
  std::map<std::string, int> tuned_types;
  for (const auto& c : choices)
    if (c.tuned) ++tuned_types[ggml::traits(c.type).name];
  CHECK(tuned_types["Q4_K"] + tuned_types["Q6_K"] + tuned_types["Q5_0"] + tuned_types["Q8_0"] == 7 * model.config.layers);
  CHECK(tuned_types["Q4_K"] > 0);
  CHECK(tuned_types["Q6_K"] > 0);
  // what llama.cpp reads back is the tuned model, up to the fp16 rounding of the k-quants' d/dmin
  const LlamaModel back = load_llama(path);
  double worst = 0;
  for (Index b = 0; b < model.config.layers; ++b)
    for (Linear l : all_linears) {
      const RowMatrix& ours = model.blocks[static_cast<std::size_t>(b)][l];
      const RowMatrix& read = back.blocks[static_cast<std::size_t>(b)][l];
      worst = std::max(worst, static_cast<double>((ours - read).cwiseAbs().maxCoeff() / ours.cwiseAbs().maxCoeff()));
    }
  MESSAGE("gguf:q4_k_m tuned: " << tuned_types["Q4_K"] << " Q4_K, " << tuned_types["Q6_K"] << " Q6_K, "
                                << tuned_types["Q5_0"] << " Q5_0, " << tuned_types["Q8_0"] << " Q8_0 tensors hold tuned values; "
                                << "largest difference read back / in memory: " << worst << " of the tensor's largest weight");
  CHECK(worst < 2e-3);
  const double in_memory = ppl_of(model), read_back = ppl_of(back);
  MESSAGE("perplexity in memory " << in_memory << ", read back " << read_back);
  CHECK(read_back == doctest::Approx(in_memory).epsilon(5e-3));
  fs::remove(path);
}
}  // namespace test_real_export
