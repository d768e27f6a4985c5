// Quantize every linear layer of a real model with round-to-nearest (W4G32 sym: a scheme all
// four formats hold exactly) and write it as auto_round, auto_gptq, auto_awq and GGUF (q4_0,
// which keeps the quantized codes, and q4_k_m, which llama.cpp's quantizer makes from the float
// weights); then quantize it again with each layer's GGUF scheme (q4_k_m: Q4_K / Q6_K layers
// through AutoRound's double quantization, DoubleQuantizer) and write that as q4_k_m holding the
// quantized values. Every output is read back and scored.
//
//   export_formats [--model M.gguf] [--evaluation E.tokens] [--windows 4] --output DIR
//
// DIR/checksums.json lists, for every tensor of the GGUF outputs, sums of our dequantized
// values; scripts/check_exports.py recomputes them with gguf-py (CI runs both).
#include <CLI/CLI.hpp>
#include <autoround/autoround.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "assets_path.hpp"

using namespace autoround;
namespace fs = std::filesystem;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
std::uintmax_t size_of(const fs::path& p) {
  if (!fs::is_directory(p)) return fs::file_size(p);
  std::uintmax_t n = 0;
  for (const auto& e : fs::directory_iterator(p)) n += e.file_size();
  return n;
}
/// sum, sum of squares and a position-weighted sum of a tensor's dequantized values.
nlohmann::json checksums(const GgufFile& f) {
  nlohmann::json j;
  for (const GgufTensor& t : f.tensors()) {
    const RowMatrix x = f.to_float(t);
    double sum = 0, squares = 0, weighted = 0;
    for (Index i = 0; i < x.size(); ++i) {
      const double v = x.data()[i];
      sum += v;
      squares += v * v;
      weighted += v * static_cast<double>(i % 1009);
    }
    j[t.name] = {sum, squares, weighted};
  }
  return j;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"write a real model in every export format and read each back"};
  std::string model_path = asset("smollm2-135m-instruct-q4_1.gguf"), eval_path = asset("kjv-eval.tokens");
  std::string output;
  Index windows = 4;
  app.add_option("--model", model_path, "GGUF model")->check(CLI::ExistingFile);
  app.add_option("--evaluation", eval_path, "token ids to score")->check(CLI::ExistingFile);
  app.add_option("--windows", windows, "512-token windows to score");
  app.add_option("--output", output, "output directory (replaced)")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    const GgufFile source(model_path);
    LlamaModel model = load_llama_gguf(model_path);
    const auto evaluation = read_token_file(eval_path);
    ModelQuantOptions options;
    options.spec = {4, 32, Symmetric};
    options.tune.iters = 0;  // round-to-nearest; tuning is the quantize command's job
    options.nsamples = 1;
    options.seqlen = 32;
    const auto layers = quantize_model(model, std::span<const std::int32_t>(evaluation).first(32), options);
    const double ppl = perplexity(model, evaluation, 512, windows).perplexity;
    std::printf("W4G32 sym RTN, in memory: perplexity %.4f (%ld windows)\n\n", ppl, windows);

    fs::remove_all(output);
    fs::create_directories(output);
    const QuantizedLlama quantized{model, layers, options};
    std::printf("| format | output | MB | write s | perplexity read back |\n|---|---|---|---|---|\n");
    nlohmann::json sums;
    const auto row = [&](const std::string& name, const fs::path& path, double write_seconds) {
      std::printf("| %s | %s | %.1f | %.2f | %.4f |\n", name.c_str(), fs::relative(path, output).c_str(),
                  static_cast<double>(size_of(path)) / 1e6, write_seconds, perplexity(load_llama(path), evaluation, 512, windows).perplexity);
      std::fflush(stdout);
    };
    for (HfFormat f : {HfFormat::AutoRound, HfFormat::AutoGptq, HfFormat::AutoAwq}) {
      const fs::path dir = fs::path(output) / format_name(f);
      fs::create_directories(dir);
      const auto t0 = std::chrono::steady_clock::now();
      export_hf_checkpoint(quantized, f, dir, {&source, {}});
      row(format_name(f), dir, seconds_since(t0));
    }
    for (const char* type : {"q4_0", "q4_k_m"}) {
      const fs::path file = fs::path(output) / (std::string("model-") + type + ".gguf");
      const auto t0 = std::chrono::steady_clock::now();
      export_gguf_model(quantized, source, gguf_scheme(type), file);
      row(std::string("gguf:") + type, file, seconds_since(t0));
      sums[file.filename().string()] = checksums(GgufFile(file.string()));
    }
    {  // q4_k_m with every linear layer quantized for its block type (the quantize command tunes these)
      LlamaModel kmodel = load_llama_gguf(model_path);
      ModelQuantOptions koptions = options;
      koptions.overrides = gguf_tuning_overrides(gguf_scheme("q4_k_m"), kmodel);
      const auto klayers = quantize_model<SignSGD<LinearDecay>, Cpu, DynamicDoubleQuantizer>(
          kmodel, std::span<const std::int32_t>(evaluation).first(32), koptions);
      std::printf("| (q4_k_m schemes in memory: perplexity %.4f) | | | | |\n", perplexity(kmodel, evaluation, 512, windows).perplexity);
      const fs::path file = fs::path(output) / "model-q4_k_m-kquant-schemes.gguf";
      const auto t0 = std::chrono::steady_clock::now();
      export_gguf_model(QuantizedLlama<DynamicDoubleQuantizer>{kmodel, klayers, koptions}, source, gguf_scheme("q4_k_m"), file);
      row("gguf:q4_k_m (k-quant schemes)", file, seconds_since(t0));
      sums[file.filename().string()] = checksums(GgufFile(file.string()));
    }
    const std::string text = sums.dump() + "\n";
    write_file_atomically(fs::path(output) / "checksums.json", std::as_bytes(std::span<const char>(text.data(), text.size())));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export_formats: %s\n", e.what());
    return 1;
  }
}
