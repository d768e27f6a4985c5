// autoround: quantize a LLaMA-family model block by block with AutoRound, and measure perplexity.
//
//   autoround quantize --model M.gguf --calibration C.tokens --output DIR [--bits 4] [--group-size 128]
//                      [--sym] [--iters 200] [--nsamples 128] [--seqlen 2048] [--batch-size 8]
//                      [--recipe default|best|light|rtn] [--layer 'REGEX=BITS[:GROUP[:sym|asym]]|fp']...
//                      [--eval E.tokens] [--overwrite]
//   autoround eval --model M.gguf --text E.tokens [--context 512] [--windows 0]
//
// Token files hold the model's token ids, one per line (scripts/tokenize_gguf.py writes them).
#include <CLI/CLI.hpp>
#include <autoround/autoround.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

using namespace autoround;
namespace fs = std::filesystem;

namespace {

std::string asset(const std::string& file) {
  const char* env = std::getenv("AUTOROUND_ASSETS");
  return (env && *env ? std::string(env) : std::string(AUTOROUND_ASSETS_DIR)) + "/" + file;
}

std::string clock_text(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%ld:%02ld", s / 60, s % 60);
  return buffer;
}

/// "REGEX=4:128:sym", "REGEX=3", "REGEX=fp" -> LayerOverride
LayerOverride parse_override(const std::string& text, const QuantSpec& base) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0) throw Error("--layer '" + text + "': expected REGEX=BITS[:GROUP[:sym|asym]] or REGEX=fp");
  LayerOverride o{text.substr(0, eq), base};
  try {
    (void)std::regex(o.pattern);
  } catch (const std::regex_error&) {
    throw Error("--layer '" + text + "': '" + o.pattern + "' is not a valid regular expression");
  }
  const std::string value = text.substr(eq + 1);
  if (value == "fp") return {o.pattern, std::nullopt};
  std::istringstream in(value);
  std::string part;
  int field = 0;
  while (std::getline(in, part, ':')) {
    try {
      if (field == 0) o.spec->bits = std::stoi(part);
      else if (field == 1) o.spec->group_size = std::stoi(part);
      else if (field == 2 && (part == "sym" || part == "asym")) o.spec->symmetry = part == "sym" ? Symmetric : Asymmetric;
      else throw Error("");
    } catch (const std::exception&) {
      throw Error("--layer '" + text + "': cannot read '" + part + "'");
    }
    ++field;
  }
  DynamicIntQuantizer check(*o.spec);  // validates bits and group size with a clear message
  return o;
}

void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out.flush()) throw Error(tmp.string() + ": write failed");
  }
  fs::rename(tmp, path);
}

struct ProgressBar {
  Index blocks = 0;
  int iters = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  void step(Index block, int step, double loss) const {
    if (step % 5 != 0 && step + 1 != iters) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double done = static_cast<double>(block) + static_cast<double>(step + 1) / iters;
    const int width = 24, filled = static_cast<int>(width * (step + 1) / iters);
    std::fprintf(stderr, "\rblock %2ld/%ld [%s%s] step %4d/%d loss %.5g  ETA %s   ", block + 1, blocks,
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), ' ').c_str(), step + 1, iters, loss,
                 clock_text(elapsed / done * (static_cast<double>(blocks) - done)).c_str());
  }
};

int quantize(const std::string& model_path, const std::string& calibration_path, const std::string& eval_path,
             const fs::path& output, bool overwrite, ModelQuantOptions options, Index eval_windows) {
  if (fs::exists(output) && !overwrite)
    throw Error(output.string() + ": already exists (pass --overwrite to replace it)");
  LlamaModel model = load_llama_gguf(model_path);
  const auto calibration = read_token_file(calibration_path);
  std::optional<PerplexityResult> before;
  std::vector<std::int32_t> evaluation;
  if (!eval_path.empty()) {
    evaluation = read_token_file(eval_path);
    before = perplexity(model, evaluation, 512, eval_windows);
    std::printf("perplexity before: %.4f (%ld tokens)\n", before->perplexity, before->tokens_scored);
  }
  ProgressBar bar{static_cast<Index>(model.blocks.size()), options.tune.iters};
  std::vector<BlockReport> reports;
  const auto start = std::chrono::steady_clock::now();
  quantize_model(  // the quantized weights go unused until the format writers exist
      model, calibration, options, [&](const BlockReport& r, Index) { reports.push_back(r); },
      [&](Index b, int s, double loss) { bar.step(b, s, loss); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "\n");

  std::printf("\n| block | layers | RTN loss | best loss | best step | seconds |\n|---|---|---|---|---|---|\n");
  for (const BlockReport& r : reports)
    std::printf("| %ld | %d | %.5g | %.5g | %d | %.1f |\n", r.block, r.quantized_layers, r.stats.rtn_loss, r.stats.best_loss,
                r.stats.best_step, r.seconds);
  std::printf("quantized %zu blocks in %s\n", reports.size(), clock_text(seconds).c_str());

  nlohmann::json report;
  report["model"] = model_path;
  report["bits"] = options.spec.bits;
  report["group_size"] = options.spec.group_size;
  report["sym"] = options.spec.symmetry == Symmetric;
  report["iters"] = options.tune.iters;
  report["nsamples"] = options.nsamples;
  report["seqlen"] = options.seqlen;
  report["batch_size"] = options.tune.batch_size;
  report["seed"] = options.tune.seed;
  report["seconds"] = seconds;
  for (const BlockReport& r : reports)
    report["blocks"].push_back({{"block", r.block}, {"quantized_layers", r.quantized_layers}, {"rtn_loss", r.stats.rtn_loss},
                                {"best_loss", r.stats.best_loss}, {"best_step", r.stats.best_step}, {"seconds", r.seconds}});
  if (before) {
    const PerplexityResult after = perplexity(model, evaluation, 512, eval_windows);
    std::printf("perplexity after:  %.4f (before %.4f)\n", after.perplexity, before->perplexity);
    report["perplexity"] = {{"before", before->perplexity}, {"after", after.perplexity}, {"tokens", after.tokens_scored}};
  }
  // Written only when everything above succeeded; the directory appears complete or not at all.
  const fs::path staging = output.string() + ".partial";
  fs::remove_all(staging);
  fs::create_directories(staging);
  write_atomically(staging / "quantization_report.json", report.dump(2) + "\n");
  if (fs::exists(output)) fs::remove_all(output);
  fs::rename(staging, output);
  std::printf("wrote %s\n", (output / "quantization_report.json").c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"AutoRound weight quantization for LLaMA-family models"};
  app.require_subcommand(1);

  auto* q = app.add_subcommand("quantize", "quantize a model block by block");
  std::string model_path, calibration_path = asset("kjv-calib.tokens"), eval_path, recipe = "default";
  std::string output;
  bool overwrite = false, sym = false;
  ModelQuantOptions options;
  std::vector<std::string> layer_overrides;
  Index eval_windows = 0;
  int iters = -1, threads = 0;
  Index nsamples = -1;
  q->add_option("--model", model_path, "GGUF model (llama architecture)")->required()->check(CLI::ExistingFile);
  q->add_option("--calibration", calibration_path, "calibration token ids")->check(CLI::ExistingFile);
  q->add_option("--output", output, "output directory")->required();
  q->add_option("--bits", options.spec.bits, "weight bits (2-8)")->check(CLI::Range(2, 8));
  q->add_option("--group-size", options.spec.group_size, "weights per group (-1: per channel)");
  q->add_flag("--sym", sym, "symmetric quantization");
  q->add_option("--recipe", recipe, "default | best | light | rtn")->check(CLI::IsMember({"default", "best", "light", "rtn"}));
  q->add_option("--iters", iters, "tuning steps per block (overrides the recipe)")->check(CLI::NonNegativeNumber);
  q->add_option("--nsamples", nsamples, "calibration samples (overrides the recipe)")->check(CLI::PositiveNumber);
  q->add_option("--seqlen", options.seqlen, "tokens per sample")->check(CLI::PositiveNumber);
  q->add_option("--batch-size", options.tune.batch_size, "samples per step")->check(CLI::PositiveNumber);
  q->add_option("--lr", options.tune.lr, "rounding learning rate (default 1/iters)")->check(CLI::NonNegativeNumber);
  q->add_option("--minmax-lr", options.tune.minmax_lr, "clipping learning rate (default: lr)")->check(CLI::NonNegativeNumber);
  q->add_option("--seed", options.tune.seed, "sampler seed");
  q->add_option("--layer", layer_overrides, "per-layer override REGEX=BITS[:GROUP[:sym|asym]] or REGEX=fp");
  q->add_option("--eval", eval_path, "token ids to measure perplexity on before and after")->check(CLI::ExistingFile);
  q->add_option("--eval-windows", eval_windows, "512-token windows to score (0: all)")->check(CLI::NonNegativeNumber);
  q->add_option("--threads", threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  q->add_flag("--overwrite", overwrite, "replace an existing output directory");

  auto* e = app.add_subcommand("eval", "perplexity of a model on token ids");
  std::string text_path;
  Index context = 512;
  e->add_option("--model", model_path, "GGUF model")->required()->check(CLI::ExistingFile);
  e->add_option("--text", text_path, "token ids")->required()->check(CLI::ExistingFile);
  e->add_option("--context", context, "tokens per window")->check(CLI::Range(2, 1 << 20));
  e->add_option("--windows", eval_windows, "windows to score (0: all)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) Eigen::setNbThreads(threads);
    if (*e) {
      const PerplexityResult r = perplexity(load_llama_gguf(model_path), read_token_file(text_path), context, eval_windows);
      std::printf("perplexity %.4f over %ld tokens (%ld windows of %ld)\n", r.perplexity, r.tokens_scored, r.windows, context);
      return 0;
    }
    // recipes of the reference's CLI, then explicit flags on top
    options.tune.iters = 200;
    options.nsamples = 128;
    if (recipe == "best") options.tune.iters = 1000, options.nsamples = 512;
    if (recipe == "light") options.tune.iters = 50, options.tune.lr = options.tune.lr > 0 ? options.tune.lr : 5e-3f;
    if (recipe == "rtn") options.tune.iters = 0;
    if (iters >= 0) options.tune.iters = iters;
    if (nsamples > 0) options.nsamples = nsamples;
    options.spec.symmetry = sym ? Symmetric : Asymmetric;
    DynamicIntQuantizer check(options.spec);
    for (const std::string& text : layer_overrides) options.overrides.push_back(parse_override(text, options.spec));
    return quantize(model_path, calibration_path, eval_path, output, overwrite, options, eval_windows);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "autoround: error: %s\n", error.what());
    return 1;
  }
}
