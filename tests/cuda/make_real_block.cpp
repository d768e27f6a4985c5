// Writes one real decoder block of the asset model (SmolLM2-135M-Instruct: its seven weights and
// two norms) and that block's real calibration inputs (KJV Genesis windows, embedded and pushed
// through the full-precision blocks before it) to one safetensors file, so that
// test_cuda_block_run can compare the GPU and CPU block runs on real weights and real
// activations on a GPU machine that has no assets (scripts/gpu-deps.sh writes .deps/real_block.safetensors).
//
//   make_real_block OUT [block=10] [nsamples=16] [seqlen=256]
#include <autoround/autoround.hpp>
#include <cstdio>
#include <cstdlib>

#include "../support/assets.hpp"

using namespace autoround;

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_real_block OUT [block] [nsamples] [seqlen]\n");
    return 2;
  }
  test_assets::require_all();
  const Index block = argc > 2 ? std::atol(argv[2]) : 10, nsamples = argc > 3 ? std::atol(argv[3]) : 16,
              seqlen = argc > 4 ? std::atol(argv[4]) : 256;
  const LlamaModel model = load_llama_gguf(test_assets::model());
  const auto tokens = read_token_file(test_assets::calibration_tokens());
  const LlamaConfig& c = model.config;
  if (block < 0 || block >= c.layers || static_cast<std::size_t>(nsamples * seqlen) > tokens.size())
    throw Error("block or sample count out of range");
  RowMatrix inputs(nsamples * seqlen, c.hidden);
  for (Index s = 0; s < nsamples; ++s) {
    RowMatrix x = embed(model, std::span(tokens).subspan(static_cast<std::size_t>(s * seqlen), static_cast<std::size_t>(seqlen)));
    for (Index b = 0; b < block; ++b) block_forward(model.blocks[static_cast<std::size_t>(b)], c, x);
    inputs.middleRows(s * seqlen, seqlen) = x;
  }
  SafetensorsWriter out;
  const LlamaBlock& blk = model.blocks[static_cast<std::size_t>(block)];
  auto add = [&](const std::string& name, const float* data, std::vector<std::int64_t> shape, Index n) {
    out.add(name, Dtype::F32, std::move(shape), std::span<const float>(data, static_cast<std::size_t>(n)));
  };
  for (Linear l : all_linears) add(hf_name(l), blk[l].data(), {blk[l].rows(), blk[l].cols()}, blk[l].size());
  add("attn_norm", blk.attn_norm.data(), {c.hidden}, c.hidden);
  add("ffn_norm", blk.ffn_norm.data(), {c.hidden}, c.hidden);
  add("inputs", inputs.data(), {nsamples, seqlen, c.hidden}, inputs.size());
  for (auto [key, value] : {std::pair<const char*, Index>{"hidden", c.hidden}, {"intermediate", c.intermediate}, {"heads", c.heads},
                            {"kv_heads", c.kv_heads}, {"head_dim", c.head_dim}, {"block", block}})
    out.set_metadata(key, std::to_string(value));
  auto exact = [](float v) {  // enough digits to read the same float back
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", static_cast<double>(v));
    return std::string(text);
  };
  out.set_metadata("rope_theta", exact(c.rope_theta));
  out.set_metadata("rms_eps", exact(c.rms_eps));
  out.set_metadata("rope_style", c.rope_style == RopeStyle::AdjacentPairs ? "adjacent" : "half");
  out.set_metadata("source", "SmolLM2-135M-Instruct Q4_1 GGUF (dequantized), KJV Genesis calibration tokens");
  out.write(argv[1]);
  std::printf("make_real_block: wrote %s (block %ld, %ld samples x %ld tokens)\n", argv[1], block, nsamples, seqlen);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "make_real_block: %s\n", e.what());
  return 1;
}
