// Perplexity of a GGUF llama-architecture model on a token-id file, in float32.
//
//   perplexity [--model M.gguf] [--tokens T.tokens] [--context 512] [--windows 0 (all)]
#include <CLI/CLI.hpp>
#include <autoround/model/gguf_source.hpp>
#include <autoround/model/perplexity.hpp>
#include <autoround/model/token_file.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "assets_path.hpp"

using namespace autoround;

int main(int argc, char** argv) {
  CLI::App app{"Perplexity of a GGUF model on token ids"};
  std::string model_path = asset("smollm2-135m-instruct-q4_1.gguf"), tokens_path = asset("kjv-eval.tokens");
  Index context = 512, windows = 0;
  app.add_option("--model", model_path, "GGUF model (llama architecture)")->check(CLI::ExistingFile);
  app.add_option("--tokens", tokens_path, "token ids (one per line)")->check(CLI::ExistingFile);
  app.add_option("--context", context, "tokens per window")->check(CLI::Range(2, 1 << 20));
  app.add_option("--windows", windows, "windows to score (0 = all)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    const auto start = std::chrono::steady_clock::now();
    const LlamaModel model = load_llama_gguf(model_path);
    const PerplexityResult r = perplexity(model, read_token_file(tokens_path), context, windows);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("perplexity %.4f (mean NLL %.4f nats) over %ld tokens in %ld windows of %ld; uniform guess: %ld; %.1f s\n",
                r.perplexity, r.mean_nll, r.tokens_scored, r.windows, context, model.config.vocab, seconds);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
