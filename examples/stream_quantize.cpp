// Quantize a model too large to load: read it block by block from its file (GGUF or a Hugging
// Face directory), tune each block with AutoRound as it comes, and write the auto_round
// checkpoint and a GGUF file while the blocks finish. Host memory is one block and its tuning
// state, one checkpoint shard and the calibration activations, whatever the number of layers.
//
//   stream_quantize [--model M.gguf|DIR] [--calibration C.tokens] [--iters 50] --output DIR
#include <CLI/CLI.hpp>
#include <autoround/autoround.hpp>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "assets_path.hpp"

using namespace autoround;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"streaming AutoRound: W4G128 auto_round checkpoint (and q4_0 GGUF from a GGUF source)"};
  std::string model_path = asset("smollm2-135m-instruct-q4_1.gguf");
  std::string calibration_path = asset("kjv-calib.tokens");
  fs::path output;
  int iters = 50;
  app.add_option("--model", model_path, "GGUF file or Hugging Face directory")->check(CLI::ExistingPath);
  app.add_option("--calibration", calibration_path, "token ids")->check(CLI::ExistingFile);
  app.add_option("--iters", iters, "tuning steps per block");
  app.add_option("--output", output, "output directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    // 1. the source: nothing is loaded yet, the file is mapped
    std::optional<GgufModelSource> gguf;
    std::optional<HfModelSource> hf;
    if (fs::is_directory(model_path)) hf.emplace(model_path); else gguf.emplace(model_path);
    const AnyModelSource source = gguf ? AnyModelSource(*gguf) : AnyModelSource(*hf);

    // 2. what to tune on: W4G32 sym (a scheme auto_round and GGUF's Q4_0 both hold exactly)
    ModelQuantOptions options;
    options.spec = {4, 32, Symmetric};
    options.nsamples = 16;
    options.seqlen = 128;
    options.tune.iters = iters;
    options.tune.clip_init = ClipInit::WeightedSearch;
    const auto samples = consecutive_windows(read_token_file(calibration_path), options.nsamples, options.seqlen);

    // 3. the sinks: files written as the blocks finish
    fs::create_directories(output / "auto_round");
    HfShardWriter checkpoint(HfFormat::AutoRound, output / "auto_round", source.config(), options,
                             ExportSource{gguf ? &gguf->file() : nullptr, hf ? fs::path(model_path) : fs::path()});
    std::optional<GgufBlockWriter<>> q4_0;
    if (gguf) q4_0.emplace(gguf->file(), gguf_scheme("q4_0"), source.config(), output / "model-q4_0.gguf");

    quantize_model_streaming(
        source, samples, options,
        [&](Index b, const LlamaBlock& block, const LayerResults<>& results) {
          checkpoint.add_block(b, block, results);
          if (q4_0) q4_0->add_block(b, results);
        },
        [](const BlockReport& r, Index blocks) {
          std::printf("block %ld/%ld: loss %.4g -> %.4g (%.1f s)\n", r.block + 1, blocks, r.stats.rtn_loss, r.stats.best_loss, r.seconds);
        });
    checkpoint.finish(source);
    if (q4_0) q4_0->finish();
    std::printf("wrote %s\n", output.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stream_quantize: %s\n", e.what());
    return 1;
  }
}
