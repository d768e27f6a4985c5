// Quantize the linear layers of one transformer block of a real model with round-to-nearest and
// with AutoRound, on real activations, and compare their output error on held-out text.
//
//   quantize_layers [--model M.gguf] [--calibration C.tokens] [--evaluation E.tokens]
//                   [--block 3] [--iters 200] [--nsamples 16] [--seqlen 128] [--eval-samples 8]
//
// Calibration activations: the first nsamples x seqlen tokens of the calibration text run
// through blocks 0..block-1 in float32; evaluation: the same for the held-out text.
#include <CLI/CLI.hpp>
#include <autoround/autoround.hpp>
#include <autoround/model/calibration.hpp>
#include <autoround/model/gguf_source.hpp>
#include <autoround/model/token_file.hpp>
#include <cstdio>

#include "assets_path.hpp"

using namespace autoround;

namespace {

struct Row {
  double rtn_mse, tuned_mse, seconds;
  int best_step;
};

template <class Q>
Row compare(const RowMatrix& weight, const RowMatrix& calibration, const RowMatrix& evaluation, const TuneOptions& options,
            const std::string& name) {
  const auto rtn = quantize_rtn(Q{}, view(weight), name);
  const auto tuned = LayerTuner<Q>(options).tune(view(weight), view(calibration), name);
  return {output_mse(view(weight), rtn, view(evaluation)), output_mse(view(weight), tuned, view(evaluation)),
          tuned.stats.seconds, tuned.stats.best_step};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"AutoRound vs round-to-nearest on the layers of one block of a real model"};
  std::string model_path = asset("smollm2-135m-instruct-q4_1.gguf");
  std::string calibration_path = asset("kjv-calib.tokens"), evaluation_path = asset("kjv-eval.tokens");
  Index block = 3, nsamples = 16, seqlen = 128, eval_samples = 8;
  TuneOptions options;
  app.add_option("--model", model_path, "GGUF model (llama architecture)")->check(CLI::ExistingFile);
  app.add_option("--calibration", calibration_path, "calibration token ids")->check(CLI::ExistingFile);
  app.add_option("--evaluation", evaluation_path, "held-out token ids")->check(CLI::ExistingFile);
  app.add_option("--block", block, "which transformer block")->check(CLI::NonNegativeNumber);
  app.add_option("--iters", options.iters, "tuning steps (0 = RTN)")->check(CLI::NonNegativeNumber);
  app.add_option("--nsamples", nsamples, "calibration samples")->check(CLI::PositiveNumber);
  app.add_option("--seqlen", seqlen, "tokens per sample")->check(CLI::PositiveNumber);
  app.add_option("--eval-samples", eval_samples, "held-out samples")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", options.batch_size, "samples per step")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  options.seqlen = seqlen;

  try {
    const LlamaModel model = load_llama_gguf(model_path);
    const BlockInputs calibration = collect_block_inputs(model, read_token_file(calibration_path), nsamples, seqlen, block);
    const BlockInputs evaluation = collect_block_inputs(model, read_token_file(evaluation_path), eval_samples, seqlen, block);
    std::printf("block %ld, %ld calibration tokens, %ld held-out tokens, iters %d\n\n", block, nsamples * seqlen,
                eval_samples * seqlen, options.iters);
    std::printf("| layer | shape | scheme | RTN MSE | AutoRound MSE | AutoRound / RTN | best step | seconds |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (Linear which : all_linears) {
      const RowMatrix& w = model.blocks[static_cast<std::size_t>(block)][which];
      const std::string name = "blk." + std::to_string(block) + "." + gguf_name(which);
      const RowMatrix& x = calibration.of(which);
      const RowMatrix& e = evaluation.of(which);
      const std::pair<const char*, Row> rows[] = {
          {"W4G128 asym", compare<IntQuantizer<4, 128, Asymmetric>>(w, x, e, options, name)},
          {"W4G128 sym", compare<IntQuantizer<4, 128, Symmetric>>(w, x, e, options, name)},
          {"W2G64 asym", compare<IntQuantizer<2, 64, Asymmetric>>(w, x, e, options, name)},
      };
      for (const auto& [scheme, r] : rows)
        std::printf("| %s | %ldx%ld | %s | %.4g | %.4g | %.3f | %d | %.1f |\n", name.c_str(), w.rows(), w.cols(), scheme,
                    r.rtn_mse, r.tuned_mse, r.tuned_mse / r.rtn_mse, r.best_step, r.seconds);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
