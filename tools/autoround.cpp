// autoround: quantize a LLaMA-family model block by block with AutoRound, and measure perplexity.
//
//   autoround quantize --model M.gguf|HF_DIR --calibration C.tokens|C.txt --output DIR [--bits 4] [--group-size 128]
//                      [--sym] [--iters 200] [--nsamples 128] [--seqlen 2048] [--batch-size 8]
//                      [--recipe default|fast|best|light|rtn] [--layer 'REGEX=BITS[:GROUP[:sym|asym]]|fp']...
//                      [--scheme MXFP4|MXFP8|NVFP4|W4A16|...]
//                      [--format auto_round,auto_gptq,auto_awq,llm_compressor,gguf:q4_0|gguf:mxfp4|...]
//                      [--avg-bits 2.5 --options W2A16,W3A16 [--ignore-scale-zp-bits]]
//                      [--gguf-budget BYTES|SIZEMiB|Nbpw|TYPE|mix] [--budget-types q4_k,q5_k,...] [--budget-samples 16]
//                      [--eval E.tokens|E.txt] [--overwrite] [--resume]
//                      [--tokenizer tokenizer.model] [--device cpu|cuda] [--gemm bf16|fp32]
//                      [--gpu-memory GiB] [--gpu-streams auto|device|host] [--stream-dtype fp32|bf16]
//   autoround eval --model M.gguf|HF_DIR [--quantized DIR]... --text E.tokens|E.txt [--tokenizer tokenizer.model]
//                  [--context 512] [--windows 0] [--llama-perplexity]
//
// Output: DIR/<format>/ for each format (auto_round/, auto_gptq/, auto_awq/: Hugging Face
// checkpoints; gguf-q4_0/model-q4_0.gguf), and DIR/quantization_report.json.
// Calibration and evaluation files are text (tokenized whole, BOS first when the tokenizer asks
// for it, by the model's own tokenizer: the byte-level BPE or SentencePiece vocabulary stored in
// a GGUF model, a directory's tokenizer.json, or with --tokenizer a SentencePiece tokenizer.model), token ids (a .tokens file, one per line), or, for
// calibration, a .jsonl corpus of documents sampled as the reference samples pile-10k
// (calibration_samples). One stream is cut into consecutive windows from its start.
// --device cuda (builds where nvcc is found) tunes every block on the GPU with the Cuda policy
// of the same quantize_model template (tools/cuda_pipeline.cu); --gemm picks its GEMM precision
// (bf16 operands, the reference's amp default on CUDA, or float32, the CPU's numerics);
// --gpu-memory bounds the device memory (the activation streams go to pinned host memory and a
// block's step is split into micro-batches and attention chunks as needed to fit).
#include <CLI/CLI.hpp>
#include <autoround/autoround.hpp>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <nlohmann/json.hpp>
#include <string>
#include <autoround/tokenizer/model_tokenizer.hpp>
#if defined(AUTOROUND_CUDA_PIPELINE)
#include "cuda_pipeline.hpp"
#endif

using namespace autoround;
namespace fs = std::filesystem;

namespace {

/// The model's own tokenizer for text (tokenizer_for_model: --tokenizer's SentencePiece model, or
/// the directory's tokenizer.json, or the GGUF's vocabulary). Text is tokenized
/// whole, BOS first when the tokenizer asks for one.
bool parse_special_tokens = false;  // --parse-special

std::function<std::vector<std::int32_t>(const std::string&)> text_tokenizer(const std::string& model_path, const std::string& tokenizer_path,
                                                                           Index model_vocab, const std::string& text_path) {
  try {
    const AnyTokenizer tokenizer = tokenizer_for_model(model_path, tokenizer_path, parse_special_tokens);
    if (!tokenizer_path.empty() && static_cast<Index>(tokenizer.vocab_size()) != model_vocab)
      std::fprintf(stderr, "autoround: warning: %s has %zu tokens, the model %ld: is it the model's own tokenizer?\n",
                   tokenizer_path.c_str(), tokenizer.vocab_size(), model_vocab);
    return [tokenizer](const std::string& text) { return tokenizer.encode(text); };
  } catch (const Error& e) {
    throw Error(text_path + ": text needs the model's tokenizer (" + e.what() + "); or give token ids (a .tokens file, one id per line)");
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// Token ids of a calibration or evaluation file: a .tokens file (or one that holds nothing but
/// ids) is token ids, one per line (scripts/tokenize_gguf.py writes them); anything else is text,
/// tokenized whole by the model's tokenizer (text_tokenizer).
std::vector<std::int32_t> load_tokens(const std::string& path, const std::string& tokenizer_path, Index model_vocab,
                                      const std::string& model_path) {
  if (tokenizer_path.empty()) {
    if (fs::path(path).extension() == ".tokens") return read_token_file(path);
    try {
      return read_token_file(path);
    } catch (const Error&) {  // text
    }
  }
  const auto tokenize = text_tokenizer(model_path, tokenizer_path, model_vocab, path);
  const std::vector<std::int32_t> ids = tokenize(read_text(path));
  if (ids.empty()) throw Error(path + ": no tokens");
  return ids;
}

/// Documents of a JSON-lines corpus ({"text": ...} per line, as pile-10k), each tokenized (BOS first).
std::vector<TokenSequence> load_documents(const std::string& path, const std::string& tokenizer_path, Index model_vocab,
                                          const std::string& model_path) {
  const auto tokenize = text_tokenizer(model_path, tokenizer_path, model_vocab, path);
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open");
  std::vector<TokenSequence> documents;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object() || !record.contains("text") || !record["text"].is_string())
      throw Error(path + ": line " + std::to_string(number) + " is not a JSON object with a \"text\" string");
    documents.push_back(tokenize(record["text"].get<std::string>()));
  }
  if (documents.empty()) throw Error(path + ": no documents");
  return documents;
}

/// SIGINT / SIGTERM: the run stops at the next tuning step and removes what it staged, so an
/// interrupted run leaves no output directory behind (exit status 128 + the signal's number).
volatile std::sig_atomic_t stop_signal = 0;
extern "C" void request_stop(int signal) { stop_signal = signal; }
struct Interrupted {};
void stop_if_asked() {
  if (stop_signal != 0) throw Interrupted{};
}

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
  o.spec->data_type = DataType::Int;  // BITS[:GROUP[:sym|asym]] is an integer scheme (weight-only)
  o.spec->act_bits = 16;
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

/// One --options entry: the reference's preset (W2A16, W3A16, W4A16, W8A16: group 128,
/// symmetric) or BITS:GROUP:sym|asym.
QuantSpec parse_scheme_option(const std::string& text, const QuantSpec& base) {
  if (text.size() == 5 && text[0] == 'W' && text.substr(2) == "A16" && std::isdigit(static_cast<unsigned char>(text[1])))
    return QuantSpec{text[1] - '0', 128, Symmetric};
  const LayerOverride o = parse_override(".=" + text, base);
  if (!o.spec) throw Error("--options '" + text + "': expected W2A16, W3A16, W4A16, W8A16 or BITS:GROUP:sym|asym");
  return *o.spec;
}

void write_atomically(const fs::path& path, const std::string& text) {
  write_file_atomically(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

/// One entry of --format.
struct OutputFormat {
  std::string name;                  ///< as given: "auto_round", "gguf:q4_0", ...
  std::optional<HfFormat> hf;        ///< a Hugging Face checkpoint layout
  std::optional<GgufScheme> gguf;    ///< or a GGUF file
  std::string directory() const { return gguf ? "gguf-" + gguf->name : name; }
};

std::vector<OutputFormat> parse_formats(const std::string& list) {
  std::vector<OutputFormat> formats;
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    OutputFormat f{item, {}, {}};
    if (item == "auto_round") f.hf = HfFormat::AutoRound;
    else if (item == "auto_gptq") f.hf = HfFormat::AutoGptq;
    else if (item == "auto_awq") f.hf = HfFormat::AutoAwq;
    else if (item == "llm_compressor") f.hf = HfFormat::LlmCompressor;
    else if (item == "fp8") f.hf = HfFormat::Fp8;
    else if (item.rfind("gguf:", 0) == 0) f.gguf = gguf_scheme(item.substr(5));
    else throw Error("--format '" + item + "': expected auto_round, auto_gptq, auto_awq, llm_compressor, fp8 or gguf:TYPE");
    for (const auto& g : formats)
      if (g.name == item) throw Error("--format '" + item + "' is given twice");
    formats.push_back(f);
  }
  if (formats.empty()) throw Error("--format: no format given");
  return formats;
}

std::string describe_scheme(const QuantSpec& s) {
  if (s.data_type == DataType::NvFp) return "NVFP4";
  if (s.data_type == DataType::MxFp) return std::string(s.bits == 4 ? "MXFP4" : "MXFP8") + (s.act_rceil ? "_RCEIL" : "");
  if (s.data_type == DataType::Fp) return s.group_rows > 1 ? "FP8_BLOCK" : "FP8_STATIC";
  return "W" + std::to_string(s.bits) + "G" + std::to_string(s.group_size) + (s.symmetry == Symmetric ? " sym" : " asym");
}

/// Refuse, before hours of tuning, a scheme a requested format cannot hold.
void check_formats(const std::vector<OutputFormat>& formats, const ModelQuantOptions& options, bool gguf_source) {
  std::vector<QuantSpec> specs{options.spec};
  for (const auto& o : options.overrides)
    if (o.spec) specs.push_back(*o.spec);
  for (const QuantSpec& s : specs)
    if ((s.data_type == DataType::Int) != (options.spec.data_type == DataType::Int))
      throw Error("--layer: one run holds integer or floating-point schemes, not both (--scheme " +
                  std::string(data_type_name(options.spec.data_type)) + " with an integer --layer override, or the reverse)");
  for (const auto& f : formats) {
    if (f.gguf && !gguf_source) throw Error("--format " + f.name + ": GGUF output needs a GGUF source model (its metadata and tokenizer)");
    // each gguf:TYPE is tuned for its own block types whatever the scheme; an FP scheme beside one
    // other than mxfp4 is most likely a mistake
    if (f.gguf && options.spec.data_type != DataType::Int && f.gguf->mix != GgufMix::MXFP4)
      throw Error("--format " + f.name + ": --scheme " + describe_scheme(options.spec) +
                  " is written as auto_round or llm_compressor (or gguf:mxfp4); each gguf:TYPE is tuned for its own block types");
    if (!f.hf) continue;
    for (const QuantSpec& s : specs) {
      if (s.data_type != DataType::Int) {
        if (*f.hf == HfFormat::LlmCompressor && s.act_rceil)
          throw Error("--format llm_compressor: compressed-tensors has no rounded-up (rceil) MX activation scales; --scheme " +
                      describe_scheme(s) + " is written as auto_round");
        const bool block = s.data_type == DataType::Fp && s.group_rows > 1;
        if (*f.hf == HfFormat::Fp8 && !block)
          throw Error("--format fp8: holds --scheme FP8_BLOCK (128 x 128 tiles); --scheme " + describe_scheme(s) +
                      " is written as auto_round or llm_compressor");
        if (*f.hf != HfFormat::AutoRound && *f.hf != HfFormat::LlmCompressor && *f.hf != HfFormat::Fp8)
          throw Error("--format " + f.name + ": floating-point schemes (MXFP4, MXFP8, NVFP4, FP8_STATIC, FP8_BLOCK) are written as auto_round or llm_compressor checkpoints");
        continue;
      }
      if (*f.hf == HfFormat::Fp8) throw Error("--format fp8: holds --scheme FP8_BLOCK; integer schemes as auto_round, auto_gptq or auto_awq");
      if (*f.hf == HfFormat::LlmCompressor)
        throw Error("--format llm_compressor: written for --scheme MXFP4, MXFP8 or NVFP4; integer schemes as auto_round, auto_gptq or auto_awq");
      if (*f.hf == HfFormat::AutoAwq && s.bits != 4) throw Error("--format auto_awq: AWQ is 4-bit only");
      if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
        throw Error("--format " + f.name + ": " + std::to_string(s.bits) + "-bit weights cannot be packed (2, 3, 4 or 8 bits)");
    }
  }
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

/// Where the blocks are tuned.
struct Device {
  bool cuda = false;
  Cuda backend{GemmPrecision::BFloat16};
};

/// One tuning run of the model and the formats written from it. The Hugging Face formats share
/// the run of --bits/--group-size/--sym/--layer; each gguf:TYPE is tuned for the block types
/// llama-quantize gives its tensors (gguf_tuning_overrides: k-quants through the double
/// quantization), in a run of its own unless an earlier run tuned every layer to the same schemes
/// (e.g. --bits 4 --group-size 32 --sym with gguf:q4_0). So every file written holds tuned values.
struct TuningPass {
  ModelQuantOptions options;
  std::vector<OutputFormat> formats;
  std::optional<GgufScheme> tuned_for;  ///< set: each layer tuned for this GGUF file's block types
};

/// The scheme every linear layer of a model of shape `config` gets under `options` (nullopt: full
/// precision); with experts, also expert 0's and the shared expert's (the overrides treat every
/// routed expert alike).
std::vector<std::optional<QuantSpec>> layer_schemes(const ModelQuantOptions& options, const LlamaConfig& config,
                                                    const GgufExperts& experts) {
  std::vector<std::optional<QuantSpec>> schemes;
  const auto add = [&](const std::string& name, Index rows, Index cols) {
    schemes.push_back(spec_for(options, name, rows, cols));
  };
  for (Index b = 0; b < config.layers; ++b) {
    for (Linear l : all_linears) {
      const auto [rows, cols] = linear_shape(layer_config(config, b), l);
      add(layer_name(b, LinearSlot{l, LinearSlot::own}, config.model_type), rows, cols);
    }
    if (config.per_layer_input > 0)  // Gemma 4 E2B / E4B's per-layer branch
      for (Linear l : {Linear::Gate, Linear::Down})
        add(layer_name(b, LinearSlot{l, LinearSlot::per_layer}, config.model_type), l == Linear::Gate ? config.per_layer_input : config.hidden,
            l == Linear::Gate ? config.hidden : config.per_layer_input);
    if (config.latent_attention() && config.q_lora_rank > 0)  // DeepSeek-V3's q_a_proj
      add(layer_name(b, LinearSlot{Linear::Query, LinearSlot::latent}, config.model_type), config.q_lora_rank, config.hidden);
    if (experts.count == 0) continue;
    for (Linear l : {Linear::Gate, Linear::Up, Linear::Down})
      for (const auto& [who, inter] : {std::pair{Index{0}, experts.intermediate}, std::pair{LinearSlot::shared, experts.shared_intermediate}})
        if (inter > 0) add(layer_name(b, LinearSlot{l, who}, config.model_type), l == Linear::Down ? config.hidden : inter,
                           l == Linear::Down ? inter : config.hidden);
  }
  return schemes;
}

std::vector<TuningPass> plan_passes(const std::vector<OutputFormat>& formats, const ModelQuantOptions& options,
                                    const LlamaConfig& config, const GgufExperts& experts) {
  std::vector<TuningPass> passes;
  std::vector<std::vector<std::optional<QuantSpec>>> schemes;
  for (const OutputFormat& f : formats) {
    TuningPass pass{options, {}, {}};
    if (f.gguf) {
      // MXFP4 tensors are tuned as weight-only MXFP4 (llama.cpp pairs them with Q8_0 activations)
      if (f.gguf->mix == GgufMix::MXFP4) pass.options.spec = exact_spec_for(ggml::Type::MXFP4).value();
      pass.options.overrides = gguf_tuning_overrides(*f.gguf, config, experts);
      pass.tuned_for = f.gguf;
    }
    const auto mine = layer_schemes(pass.options, config, experts);
    std::size_t i = 0;
    while (i < passes.size() && schemes[i] != mine) ++i;
    if (i == passes.size()) {
      passes.push_back(pass);
      schemes.push_back(mine);
    }
    passes[i].formats.push_back(f);
  }
  return passes;
}

std::string describe(const TuningPass& pass) {
  if (pass.tuned_for)
    return "each linear layer tuned for its " + pass.tuned_for->name + " block type (" +
           (pass.tuned_for->tensor_types.empty() ? "llama-quantize's choice)" : "chosen at the size budget)");
  const QuantSpec& s = pass.options.spec;
  if (s.data_type != DataType::Int)
    return describe_scheme(s) + (pass.options.overrides.empty() ? "" : " with " + std::to_string(pass.options.overrides.size()) + " --layer overrides");
  return "W" + std::to_string(s.bits) + "G" + std::to_string(s.group_size) + (s.symmetry == Symmetric ? " sym" : " asym") +
         (pass.options.overrides.empty() ? "" : " with " + std::to_string(pass.options.overrides.size()) + " --layer overrides");
}

/// What one tuning run produced: the per-block reports and the formats' report entries.
struct PassResult {
  std::vector<BlockReport> reports;
  double seconds = 0;
  nlohmann::json formats;
};

/// The writers of one pass's formats, fed block by block as the blocks are tuned
/// (quantize_model_streaming's sink): HfShardWriter for the Hugging Face formats, GgufBlockWriter
/// for a GGUF file. With `keep` the dequantized blocks are also kept (for --eval).
template <WeightQuantizer Q>
class PassWriters {
 public:
  PassWriters(const TuningPass& pass, const AnyModelSource& source, const GgufFile* source_gguf, const fs::path& staging,
              std::optional<LlamaModel>* keep)
      : source_(source), keep_(keep) {
    const ExportSource from{source_gguf, source_gguf ? fs::path() : fs::path(source.name())};
    for (const OutputFormat& f : pass.formats) {
      const fs::path dir = staging / f.directory();
      fs::create_directories(dir);
      if (f.hf) {
        if constexpr (!std::is_same_v<Q, DynamicDoubleQuantizer>)
          hf_.push_back({f, dir, std::make_unique<HfShardWriter>(*f.hf, dir, source.config(), pass.options, from)});
        else  // plan_passes never puts a Hugging Face format into a k-quant run
          throw Error("--format " + f.name + ": cannot be written from a run tuned for GGUF k-quants");
      } else {
        gguf_.push_back({f, dir / ("model-" + f.gguf->name + ".gguf"),
                         std::make_unique<GgufBlockWriter<Q>>(*source_gguf, *f.gguf, source.config(), dir / ("model-" + f.gguf->name + ".gguf"))});
      }
    }
    if (keep_) {
      keep_->emplace();
      (*keep_)->config = source.config();
    }
  }

  void add_block(Index b, const LlamaBlock& block, const LayerResults<Q>& results) {
    if constexpr (!std::is_same_v<Q, DynamicDoubleQuantizer>)  // a k-quant run writes GGUF only
      for (auto& h : hf_) h.writer->add_block(b, block, results);
    for (auto& g : gguf_) g.writer->add_block(b, results);
    if (keep_) {  // the block's quantized weights come released: --eval needs their values
      (*keep_)->blocks.push_back(block);
      detail::dequantize_released((*keep_)->blocks.back(), results);
    }
  }

  /// Close every file; the formats' report entries.
  nlohmann::json finish(const fs::path& output) {
    nlohmann::json report;
    for (auto& h : hf_) {
      h.writer->finish(source_);
      const auto& fp_layers = h.writer->not_converted();
      const std::size_t dropped = h.writer->unfitting();  // (routers and shared-expert gates are float by design)
      report[h.format.name]["float16_layers"] = fp_layers;
      if (dropped > 0)
        std::printf("warning: %s cannot hold %zu quantized layers (shape does not fit its packing); they are written as float16 of their quantized values\n",
                    h.format.name.c_str(), dropped);
    }
    for (auto& g : gguf_) {
      const auto choices = g.writer->finish();
      std::size_t tuned = 0;
      for (const auto& ch : choices) tuned += ch.tuned;
      report[g.format.name]["tensors_with_tuned_values"] = tuned;
      std::printf("%s: %zu of %zu tensors hold AutoRound-tuned values (the linear layers; embeddings and norms as llama-quantize)\n",
                  g.format.name.c_str(), tuned, choices.size());
    }
    auto describe_files = [&](const OutputFormat& f, const fs::path& dir) {
      std::uintmax_t bytes = 0;
      for (const auto& entry : fs::directory_iterator(dir)) bytes += entry.file_size();
      report[f.name]["directory"] = f.directory();
      report[f.name]["bytes"] = bytes;
      std::printf("wrote %-12s %s/ (%.1f MB)\n", f.name.c_str(), (output / f.directory()).c_str(), static_cast<double>(bytes) / 1e6);
    };
    for (auto& h : hf_) describe_files(h.format, h.dir);
    for (auto& g : gguf_) describe_files(g.format, g.file.parent_path());
    if (keep_) {
      LlamaModel& m = **keep_;
      m.embedding = source_.embedding();
      m.final_norm = source_.final_norm();
      m.output = source_.output();
      if (m.config.per_layer_input > 0) m.per_layer = source_.per_layer_embedding();  // (Gemma 4 E2B / E4B)
    }
    return report;
  }

 private:
  struct Hf {
    OutputFormat format;
    fs::path dir;
    std::unique_ptr<HfShardWriter> writer;
  };
  struct Gguf {
    OutputFormat format;
    fs::path file;
    std::unique_ptr<GgufBlockWriter<Q>> writer;
  };
  const AnyModelSource& source_;
  std::optional<LlamaModel>* keep_;
  std::vector<Hf> hf_;
  std::vector<Gguf> gguf_;
};

/// One tuning run, streamed: each block is read from the source, tuned (CPU or GPU) and handed
/// to the pass's writers; only the block being tuned is held, unless --eval keeps them all.
template <WeightQuantizer Q>
PassResult run_pass(const TuningPass& pass, const AnyModelSource& source, const GgufFile* source_gguf,
                    const std::vector<TokenSequence>& samples, Device device, const fs::path& staging, const fs::path& output,
                    std::optional<LlamaModel>* keep, const fs::path& checkpoint_dir, const std::string& fingerprint) {
  ProgressBar bar{source.config().layers, pass.options.tune.iters};
  PassResult r;
  const RunCheckpoint<Q> checkpoint(checkpoint_dir, fingerprint, source.config().layers);
  if (checkpoint.finished() > 0)
    std::printf("resuming: blocks 1-%ld of %ld are kept in %s and not tuned again\n", checkpoint.finished(), source.config().layers,
                checkpoint_dir.c_str());
  PassWriters<Q> writers(pass, source, source_gguf, staging, keep);
  const auto start = std::chrono::steady_clock::now();
  const auto on_block = [&](const BlockReport& b, Index) {
    r.reports.push_back(b);
    stop_if_asked();
  };
  const auto on_step = [&](Index b, int s, double loss) {
    stop_if_asked();
    bar.step(b, s, loss);
  };
  const auto sink = [&](Index b, const LlamaBlock& block, const LayerResults<Q>& results) { writers.add_block(b, block, results); };
  if (device.cuda) {
#if defined(AUTOROUND_CUDA_PIPELINE)
    autoround_cli::quantize_streaming_on_cuda(source, samples, pass.options, sink, on_block, on_step, device.backend, checkpoint);
#endif
  } else {
    quantize_model_streaming<SignSGD<LinearDecay>, Cpu, Q>(source, std::span<const TokenSequence>(samples), pass.options, sink,
                                                           on_block, on_step, SignSGD<LinearDecay>{}, Cpu{}, checkpoint);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "\n");
  stop_if_asked();
  r.formats = writers.finish(output);
  return r;
}

/// --gguf-budget: the GGUF format's tensor types chosen by measured sensitivity at a file size.
struct SizeBudget {
  std::string size;   ///< as given (bytes, MiB, bpw or a type's name); empty: the mix's own rules
  Index samples = 16; ///< calibration samples the Fisher information is measured on (the reference's AutoScheme: 16; also --avg-bits')
  std::string types;  ///< the ggml types to choose among (empty: all of gguf_budget_types)
};

/// Choose each budgeted GGUF format's tensor types (export/gguf_budget.hpp) and report them: one
/// gguf:TYPE at the size given, or with "mix" every gguf:TYPE at its own llama-quantize size (one
/// measurement of the sensitivities for all).
void plan_size_budget(const SizeBudget& size_budget, std::vector<OutputFormat>& formats, const AnyModelSource& source,
                      const GgufFile* source_gguf, const std::vector<TokenSequence>& samples, nlohmann::json& report) {
  std::vector<OutputFormat*> targets;
  for (OutputFormat& f : formats)
    if (f.gguf) {
      if (f.gguf->mix == GgufMix::MXFP4) throw Error("--gguf-budget: chooses among integer ggml types; not with gguf:mxfp4");
      targets.push_back(&f);
    }
  if (targets.empty()) throw Error("--gguf-budget: needs a --format gguf:TYPE (the file whose tensor types it chooses)");
  const bool own_sizes = size_budget.size == "mix";
  if (targets.size() > 1 && !own_sizes)
    throw Error("--gguf-budget " + size_budget.size + ": one gguf:TYPE at a time (" + targets[0]->name + " and " + targets[1]->name +
                "), or --gguf-budget mix: each at the size of llama-quantize's file of its type");
  const LlamaConfig& config = source.config();
  const std::vector<ggml::Type> allowed = size_budget.types.empty() ? std::vector<ggml::Type>{} : parse_gguf_budget_types(size_budget.types);
  const auto start = std::chrono::steady_clock::now();
  const std::size_t n = std::min(samples.size(), static_cast<std::size_t>(std::max<Index>(1, size_budget.samples)));
  const ModelFisher fisher = measure_fisher(source, std::span<const TokenSequence>(samples.data(), n));
  std::printf("sensitivities: Fisher information on %zu samples of %zu tokens (float loss %.4f), %.1f s\n", n, samples.front().size(),
              fisher.loss, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  for (OutputFormat* target : targets) {
    const std::uint64_t rule_bytes = gguf_file_size(*source_gguf, *target->gguf, config).total();
    const std::uint64_t budget = own_sizes ? rule_bytes : parse_gguf_budget(size_budget.size, *source_gguf, config);
    const GgufBudgetPlan plan = plan_gguf_budget(*source_gguf, source, *target->gguf, fisher, budget, allowed);
    // the same estimate for the types llama-quantize's rules give, for comparison
    double rule_rise = 0;
    nlohmann::json tensors = nlohmann::json::array();
    std::map<std::string, int> counts;
    for (const GgufTensorSensitivity& t : plan.tensors) {
      const ggml::Type rule = gguf_output_type(*source_gguf, *source_gguf->find_tensor(t.name), *target->gguf, config, GgufExperts{});
      nlohmann::json entry = {{"name", t.name}, {"type", ggml::traits(t.types[t.chosen]).name}, {"rule_type", ggml::traits(rule).name}};
      for (std::size_t k = 0; k < t.types.size(); ++k) {
        entry["loss_rise"][ggml::traits(t.types[k]).name] = t.loss_rise[k];
        if (t.types[k] == rule) rule_rise += t.loss_rise[k];
      }
      tensors.push_back(entry);
      ++counts[ggml::traits(t.types[t.chosen]).name];
    }
    std::printf("%s at %llu bytes (llama-quantize's %s: %llu): chosen %llu bytes, estimated loss rise %.6f nats/token "
                "(llama-quantize's types: %.6f); types:",
                target->name.c_str(), static_cast<unsigned long long>(budget), target->gguf->name.c_str(),
                static_cast<unsigned long long>(rule_bytes), static_cast<unsigned long long>(plan.file_bytes), plan.loss_rise, rule_rise);
    for (const auto& [name, count] : counts) std::printf(" %s x%d", name.c_str(), count);
    std::printf("\n");
    target->gguf->tensor_types = plan.types;
    report["gguf_budget"][target->name] = {
        {"budget", size_budget.size}, {"budget_bytes", budget},       {"file_bytes", plan.file_bytes},
        {"rule_file_bytes", rule_bytes}, {"samples", n},             {"float_loss", fisher.loss},
        {"loss_rise", plan.loss_rise}, {"rule_loss_rise", rule_rise}, {"types", size_budget.types.empty() ? "all" : size_budget.types},
        {"tensors", tensors}};
  }
}

/// --avg-bits: each block linear layer's scheme among --options by measured sensitivity.
struct BitsBudget {
  double avg_bits = 0;             ///< 0: off
  std::vector<std::string> options;
  bool weights_only = false;       ///< --ignore-scale-zp-bits
};

/// Choose the layers' schemes (tune/scheme_budget.hpp) into `options` and report them.
void plan_bits_budget(const BitsBudget& bits, const SizeBudget& size_budget, ModelQuantOptions& options, const AnyModelSource& source,
                      const std::vector<TokenSequence>& samples, nlohmann::json& report) {
  if (bits.options.size() < 2) throw Error("--avg-bits: give at least two --options to choose among (e.g. W2A16,W3A16)");
  if (!options.overrides.empty()) throw Error("--avg-bits: chooses every layer's scheme; not with --layer");
  std::vector<QuantSpec> specs;
  for (const std::string& o : bits.options) specs.push_back(parse_scheme_option(o, options.spec));
  const auto start = std::chrono::steady_clock::now();
  const std::size_t n = std::min(samples.size(), static_cast<std::size_t>(std::max<Index>(1, size_budget.samples)));
  const ModelFisher fisher = measure_fisher(source, std::span<const TokenSequence>(samples.data(), n));
  const SchemePlan plan = plan_avg_bits(source, fisher, specs, bits.avg_bits, bits.weights_only);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<int> counts(specs.size(), 0);
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerSchemeChoice& l : plan.layers) {
    ++counts[l.chosen];
    nlohmann::json entry = {{"name", l.name}, {"scheme", bits.options[l.chosen]}};
    for (std::size_t k = 0; k < specs.size(); ++k) entry["loss_rise"][bits.options[k]] = l.loss_rise[k];
    layers.push_back(entry);
  }
  std::printf("--avg-bits %.3f (%s scales and zero points): %.4f bits per weight chosen, estimated loss rise %.6f nats/token; "
              "Fisher information on %zu samples of %zu tokens, %.1f s; layers:",
              bits.avg_bits, bits.weights_only ? "without" : "with", plan.avg_bits, plan.loss_rise, n, samples.front().size(), seconds);
  for (std::size_t k = 0; k < specs.size(); ++k) std::printf(" %s x%d", bits.options[k].c_str(), counts[k]);
  std::printf("\n");
  options.spec = specs.front();
  options.overrides = plan.overrides;
  report["avg_bits"] = {{"asked", bits.avg_bits}, {"chosen", plan.avg_bits}, {"options", bits.options},
                        {"scale_zp_bits_counted", !bits.weights_only}, {"samples", n}, {"float_loss", fisher.loss},
                        {"loss_rise", plan.loss_rise}, {"seconds", seconds}, {"layers", layers}};
}

/// A run that stops before any block finished leaves no DIR.resume: there is nothing to
/// continue, and its presence would refuse the next run without --resume.
void drop_if_nothing_finished(const fs::path& resume_dir) {
  std::error_code error;
  if (!fs::exists(resume_dir, error)) return;
  for (const auto& entry : fs::recursive_directory_iterator(resume_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("block-", 0) == 0 && entry.path().extension() == ".safetensors") return;
  }
  fs::remove_all(resume_dir, error);
}

int quantize(const std::string& model_path, const std::string& calibration_path, const std::string& eval_path,
             const std::string& tokenizer_path, const fs::path& output, bool overwrite, bool resume, ModelQuantOptions options,
             Index eval_windows, std::vector<OutputFormat> formats, Device device, const SizeBudget& size_budget,
             const BitsBudget& bits_budget) {
  if (fs::exists(output) && !overwrite)
    throw Error(output.string() + ": already exists (pass --overwrite to replace it)");
  // Each finished block is kept in DIR.resume until the run completes (tune/run_checkpoint.hpp)
  const fs::path resume_dir = output.string() + ".resume";
  if (fs::exists(resume_dir) && !resume) {
    if (!overwrite)
      throw Error(resume_dir.string() + ": holds the finished blocks of an interrupted run: pass --resume to continue it, "
                  "or --overwrite to start over");
    fs::remove_all(resume_dir);
  }
  const bool gguf_source = !fs::is_directory(model_path);
  check_formats(formats, options, gguf_source);
  // the model is read block by block from the mapped file (model/model_source.hpp)
  std::optional<GgufModelSource> gguf;
  std::optional<HfModelSource> hf;
  if (gguf_source) gguf.emplace(model_path); else hf.emplace(model_path);
  const AnyModelSource source = gguf ? AnyModelSource(*gguf) : AnyModelSource(*hf);
  const GgufFile* source_gguf = gguf ? &gguf->file() : nullptr;
  const LlamaConfig& config = source.config();
  // mixture-of-experts models tune on either device (the GPU: softmax routing, cuda::BlockTuningRun refuses the rest by name)
  const GgufExperts gguf_expert_counts = source_gguf ? gguf_experts(*source_gguf) : GgufExperts{};
  const bool experts = config.experts > 0 || gguf_expert_counts.count > 0;
  if (const std::string reason = cuda_unsupported(config); device.cuda && !reason.empty())
    throw Error(cuda_refusal(model_path + ": a " + config.model_type + " model", reason));
  // the loss skips padding as the reference does: the tokenizer's pad id, when the model names one
  if (!options.pad_token && source_gguf && source_gguf->find("tokenizer.ggml.padding_token_id"))
    options.pad_token = static_cast<std::int32_t>(source_gguf->get_uint("tokenizer.ggml.padding_token_id"));
  // a corpus of documents: the reference's sampling; one stream: consecutive windows
  std::vector<TokenSequence> samples;
  if (fs::path(calibration_path).extension() == ".jsonl") {
    const auto documents = load_documents(calibration_path, tokenizer_path, config.vocab, model_path);
    samples = calibration_samples(documents, options.nsamples, options.seqlen, options.tune.seed);
    std::printf("calibration: %zu samples of %ld tokens from %zu documents\n", samples.size(), options.seqlen, documents.size());
    if (static_cast<Index>(samples.size()) < options.nsamples)
      std::fprintf(stderr, "autoround: warning: only %zu documents have %ld tokens; using them (nsamples = %ld asked)\n",
                   samples.size(), options.seqlen, options.nsamples);
    options.nsamples = static_cast<Index>(samples.size());
  } else {
    samples = consecutive_windows(load_tokens(calibration_path, tokenizer_path, config.vocab, model_path), options.nsamples, options.seqlen);
  }
  // --eval needs whole models: the source before, each run's quantized model after (held then)
  std::optional<PerplexityResult> before;
  std::vector<std::int32_t> evaluation;
  if (!eval_path.empty()) {
    evaluation = load_tokens(eval_path, tokenizer_path, config.vocab, model_path);
    before = perplexity(load_model(source), evaluation, 512, eval_windows);
    std::printf("perplexity before: %.4f (%ld tokens)\n", before->perplexity, before->tokens_scored);
  }
  nlohmann::json budget_report;
  if (!size_budget.size.empty()) {
    if (!source_gguf) throw Error("--gguf-budget: needs a GGUF source model");
    if (experts) throw Error("--gguf-budget: a mixture-of-experts model's sensitivities are not measured yet (issue #27)");
    plan_size_budget(size_budget, formats, source, source_gguf, samples, budget_report);
  }
  if (bits_budget.avg_bits > 0) {
    if (experts) throw Error("--avg-bits: a mixture-of-experts model's sensitivities are not measured yet (issue #27)");
    if (options.spec.data_type != DataType::Int) throw Error("--avg-bits: chooses among integer schemes (--options); not with --scheme " + describe_scheme(options.spec));
    plan_bits_budget(bits_budget, size_budget, options, source, samples, budget_report);
    check_formats(formats, options, gguf_source);  // the chosen schemes, as the formats hold them
  }
  const std::vector<TuningPass> passes = plan_passes(formats, options, config, gguf_expert_counts);

  nlohmann::json report = budget_report;
  report["model"] = model_path;
  report["iters"] = options.tune.iters;
  report["nsamples"] = options.nsamples;
  report["seqlen"] = options.seqlen;
  report["batch_size"] = options.tune.batch_size;
  report["lr"] = options.tune.lr;  // 0: the reference's automatic 1/iters
  report["seed"] = options.tune.seed;
  report["streams"] = options.streams == ActivationStreams::Two ? "two" : options.streams == ActivationStreams::FullPrecision ? "fp" : "quantized";
  report["loss_mask"] = options.mask_loss;
  report["clip_init"] = options.tune.clip_init == ClipInit::WeightedSearch ? "search" : "unit";
  if (options.tune.clip_init == ClipInit::WeightedSearch) {
    report["clip_refits"] = options.tune.clip_search.refits;
    report["clip_magnitude"] = options.tune.clip_search.magnitude_weighted;
    report["clip_sym"] = options.tune.clip_search.symmetric == SymmetricSearch::ScaleGrid     ? "scales"
                         : options.tune.clip_search.symmetric == SymmetricSearch::DivisorGrid ? "divisors"
                                                                                              : "grid";
    report["clip_ceiling"] = options.tune.clip_search.ceiling;
  }
  if (options.tune.outlier_fraction > 0) report["outlier_fraction"] = options.tune.outlier_fraction;  // SignRoundV2's loss filtering
  report["device"] = device.cuda ? (device.backend.precision == GemmPrecision::BFloat16 ? "cuda (bf16 GEMMs)" : "cuda (float32 GEMMs)") : "cpu";
  // what a resumed run must share with the run it continues: every setting above, the exact
  // calibration, each pass's scheme and formats, and what else changes the floats
  std::ostringstream fingerprint;
  fingerprint << "autoround quantize, resumable run v4\n" << report.dump() << "\n";
  {
    std::uint64_t hash = 1469598103934665603ull;  // FNV-1a over the calibration's token ids
    for (const TokenSequence& sample : samples)
      for (const std::int32_t t : sample) hash = (hash ^ static_cast<std::uint32_t>(t)) * 1099511628211ull;
    fingerprint << "model bytes " << (fs::is_directory(model_path) ? 0 : fs::file_size(model_path)) << "\ncalibration " << samples.size()
                << " samples, FNV-1a " << hash << "\n";
  }
  if (device.cuda)
    fingerprint << "gpu: streams " << static_cast<int>(device.backend.stream_dtype) << ", memory budget " << device.backend.memory_budget
                << ", placement " << static_cast<int>(device.backend.streams) << "\n";
  else
    fingerprint << "cpu threads " << Eigen::nbThreads() << "\n";
  for (const TuningPass& pass : passes) {
    fingerprint << "run: " << describe(pass) << ", formats";
    for (const OutputFormat& f : pass.formats) fingerprint << " " << f.name;
    for (const LayerOverride& o : pass.options.overrides)
      fingerprint << "; " << o.pattern << "=" << (o.spec ? std::to_string(o.spec->bits) + ":" + std::to_string(o.spec->group_size) + ":" +
                                                               std::to_string(o.spec->symmetry == Symmetric) + ":" +
                                                               std::to_string(o.spec->super_group_size)
                                                         : std::string("fp"));
    fingerprint << "\n";
  }
  if (before) report["perplexity_before"] = before->perplexity;
  double seconds = 0;
  // Everything goes into DIR.partial, renamed to DIR only when complete: never half-written.
  const fs::path staging = output.string() + ".partial";
  fs::remove_all(staging);
  fs::create_directories(staging);
  try {
    for (std::size_t p = 0; p < passes.size(); ++p) {
      const TuningPass& pass = passes[p];
      std::string names;
      for (const OutputFormat& f : pass.formats) names += (names.empty() ? "" : ", ") + f.name;
      std::printf("\ntuning run %zu of %zu (%s): %s\n", p + 1, passes.size(), names.c_str(), describe(pass).c_str());
      std::optional<LlamaModel> tuned;  // held only for --eval
      std::optional<LlamaModel>* keep = before ? &tuned : nullptr;
      const fs::path checkpoint = resume_dir / ("run-" + std::to_string(p + 1));
      const PassResult result =
          pass.options.spec.data_type != DataType::Int
              ? run_pass<DynamicFloatQuantizer>(pass, source, source_gguf, samples, device, staging, output, keep, checkpoint, fingerprint.str())
          : needs_double_quant(pass.options.overrides)
              ? run_pass<DynamicDoubleQuantizer>(pass, source, source_gguf, samples, device, staging, output, keep, checkpoint, fingerprint.str())
              : run_pass<DynamicIntQuantizer>(pass, source, source_gguf, samples, device, staging, output, keep, checkpoint, fingerprint.str());
      seconds += result.seconds;
      std::printf("| block | layers | RTN loss | best loss | best step | seconds (setup + steps + finish) |%s\n|---|---|---|---|---|---|%s\n",
                  experts ? " experts never reached (of all) | fewest tokens of a reached expert |" : "", experts ? "---|---|" : "");
      for (const BlockReport& r : result.reports) {
        std::printf("| %ld | %d | %.5g | %.5g | %d | %.1f (%.1f + %.1f + %.1f) |", r.block, r.quantized_layers, r.stats.rtn_loss,
                    r.stats.best_loss, r.stats.best_step, r.seconds, r.setup_seconds, r.steps_seconds,
                    r.seconds - r.setup_seconds - r.steps_seconds);
        if (r.experts > 0) std::printf(" %ld (of %ld) | %ld |", r.experts_unreached, r.experts, r.fewest_expert_tokens);
        std::printf("\n");
      }
      std::printf("quantized %zu blocks in %s (files written as the blocks finished)\n", result.reports.size(),
                  clock_text(result.seconds).c_str());
      nlohmann::json entry;
      entry["scheme"] = describe(pass);
      if (!pass.tuned_for) {
        entry["bits"] = pass.options.spec.bits;
        entry["group_size"] = pass.options.spec.group_size;
        entry["sym"] = pass.options.spec.symmetry == Symmetric;
      }
      entry["seconds"] = result.seconds;
      for (const BlockReport& r : result.reports) {
        nlohmann::json block = {{"block", r.block}, {"quantized_layers", r.quantized_layers}, {"rtn_loss", r.stats.rtn_loss},
                                {"best_loss", r.stats.best_loss}, {"best_step", r.stats.best_step}, {"seconds", r.seconds},
                                {"setup_seconds", r.setup_seconds}, {"steps_seconds", r.steps_seconds}};
        if (r.experts > 0) {  // routed experts no step reached keep their start (round to nearest from it), as the reference's
          block["experts"] = r.experts;
          block["experts_unreached"] = r.experts_unreached;
          block["fewest_expert_tokens"] = r.fewest_expert_tokens;
        }
        entry["blocks"].push_back(block);
      }
      if (tuned) {
        const PerplexityResult after = perplexity(*tuned, evaluation, 512, eval_windows);
        std::printf("perplexity after:  %.4f (before %.4f)\n", after.perplexity, before->perplexity);
        entry["perplexity_after"] = after.perplexity;
        entry["eval_tokens"] = after.tokens_scored;
      }
      entry["formats"] = result.formats;
      report["runs"].push_back(entry);
    }
    report["seconds"] = seconds;  // tuning, all runs
    stop_if_asked();
    write_atomically(staging / "quantization_report.json", report.dump(2) + "\n");
  } catch (...) {
    fs::remove_all(staging);
    drop_if_nothing_finished(resume_dir);
    throw;
  }
  if (fs::exists(output)) fs::remove_all(output);
  fs::rename(staging, output);
  fs::remove_all(resume_dir);  // complete: nothing to resume
  std::printf("wrote %s\n", (output / "quantization_report.json").c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Every tuning step allocates and frees the same large temporaries. glibc serves blocks over
  // its mmap threshold with fresh pages from the kernel each time, zeroed on first touch: a
  // 10-step run of the README's model took 1.7 million page faults. Served from the heap and
  // kept there (no mmap, no trimming), each step reuses the last one's memory (docs/speed.md).
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  CLI::App app{"AutoRound weight quantization for LLaMA-family models"};
  app.require_subcommand(1);

  auto* q = app.add_subcommand("quantize", "quantize a model block by block");
  std::string model_path, calibration_path = asset("kjv-calib.tokens"), eval_path, recipe = "default";
  std::string output, tokenizer_path, device_name = "cpu", gemm = "bf16", gpu_streams = "auto", stream_dtype = "fp32";
  double gpu_memory_gib = 0;
  bool overwrite = false, resume = false, sym = false;
  ModelQuantOptions options;
  SizeBudget size_budget;
  BitsBudget bits_budget;
  std::string scheme_options;
  std::string streams = "two";
  std::string clip_init = "search";
  std::string clip_sym = "grid";
  bool no_loss_mask = false;
  std::int64_t pad_token = -1;
  std::vector<std::string> layer_overrides;
  Index eval_windows = 0;
  int iters = -1, threads = 0;
  Index nsamples = -1;
  std::string format_list = "auto_round";
  q->add_option("--model", model_path, "GGUF file or Hugging Face directory (llama architecture)")->required()->check(CLI::ExistingPath);
  q->add_option("--format", format_list, "comma-separated: auto_round, auto_gptq, auto_awq, llm_compressor (the floating-point schemes), fp8 (FP8_BLOCK), gguf:TYPE");
  q->add_option("--calibration", calibration_path,
                "calibration text (the model's tokenizer: a GGUF's byte-level BPE, or --tokenizer), token ids (.tokens), or a "
                ".jsonl corpus of {\"text\": ...} documents (sampled as the reference: shuffled by --seed, cut to --seqlen, "
                "shorter ones dropped)")
      ->check(CLI::ExistingFile);
  q->add_option("--tokenizer", tokenizer_path, "SentencePiece tokenizer.model for text (a directory without tokenizer.json; GGUF models carry their own)")
      ->check(CLI::ExistingFile);
  q->add_option("--output", output, "output directory")->required();
  auto* bits_option = q->add_option("--bits", options.spec.bits, "weight bits (2-8)")->check(CLI::Range(2, 8));
  auto* group_option = q->add_option("--group-size", options.spec.group_size, "weights per group (-1: per channel)");
  auto* sym_option = q->add_flag("--sym", sym, "symmetric quantization");
  std::string scheme;
  q->add_option("--scheme", scheme,
                "the reference's preset instead of --bits/--group-size/--sym: W2A16, W3A16, W4A16, W8A16 (integers, groups of "
                "128, sym), MXFP4, MXFP8 (E2M1 / E4M3 in groups of 32, E8M0 scales; _RCEIL: activation scales rounded up), NVFP4 (E2M1 in groups of 16, E4M3 scales, "
                "a global scale), FP8_STATIC (E4M3 per output channel, inputs E4M3 under one static scale), FP8_BLOCK (E4M3 per "
                "128 x 128 tile, inputs E4M3 per token and 128 features); the floating-point ones are written as auto_round or "
                "llm_compressor (FP8_BLOCK also as fp8)")
      ->check(CLI::IsMember({"W2A16", "W3A16", "W4A16", "W8A16", "MXFP4", "MXFP8", "MXFP4_RCEIL", "MXFP8_RCEIL", "NVFP4", "FP8_STATIC", "FP8_BLOCK"}));
  q->add_option("--recipe", recipe, "default | fast | best | light | rtn")
      ->check(CLI::IsMember({"default", "fast", "best", "light", "rtn"}));
  q->add_option("--iters", iters, "tuning steps per block (overrides the recipe)")->check(CLI::NonNegativeNumber);
  q->add_option("--nsamples", nsamples, "calibration samples (overrides the recipe)")->check(CLI::PositiveNumber);
  q->add_option("--seqlen", options.seqlen, "tokens per sample")->check(CLI::PositiveNumber);
  q->add_option("--batch-size", options.tune.batch_size, "samples per step")->check(CLI::PositiveNumber);
  auto* lr_option = q->add_option("--lr", options.tune.lr, "rounding learning rate (default 1/iters; GGUF-only runs: 0.001)")
                        ->check(CLI::NonNegativeNumber);
  q->add_option("--minmax-lr", options.tune.minmax_lr, "clipping learning rate (default: lr)")->check(CLI::NonNegativeNumber);
  q->add_option("--seed", options.tune.seed, "sampler seed");
  q->add_option("--streams", streams,
                "activations a block is tuned on: two (the reference: quantized inputs, targets from the "
                "full-precision model), fp (both from the full-precision model), quantized (both from the quantized model)")
      ->check(CLI::IsMember({"two", "fp", "quantized"}));
  q->add_option("--clip-init", clip_init,
                "where the clipping scales start: search (default: each group's clipping of least "
                "activation-weighted rounding error) or unit (the reference's full range)")
      ->check(CLI::IsMember({"unit", "search"}));
  q->add_option("--clip-refits", options.tune.clip_search.refits,
                "least-squares refits of each searched group's scale and offset to its codes (default 0: the grid alone; 2 "
                "measured better with --iters 0)")
      ->check(CLI::NonNegativeNumber);
  q->add_flag("--clip-magnitude", options.tune.clip_search.magnitude_weighted,
              "weigh the search's errors by importance x sqrt(row mean square + w^2), as llama.cpp's imatrix quantizers "
              "(default: importance alone)");
  auto* clip_sym_option =
      q->add_option("--clip-sym", clip_sym,
                    "how symmetric groups (Q4_0, Q5_0, Q8_0, sym schemes) are searched: grid (the clipping grid; default for "
                    "Hugging Face formats) or scales (llama.cpp's make_qx_quants: 19 code grids around the full range's, each "
                    "at its least-squares scale; default for GGUF-only runs) or divisors (SignRoundV2's search under the "
                    "reference's enable_alg_ext: scales max|w| / d on a fine grid of d around 2^(bits-1), each at its own value)")
          ->check(CLI::IsMember({"grid", "scales", "divisors"}));
  auto* ceiling_option =
      q->add_option("--clip-ceiling", options.tune.clip_search.ceiling,
                    "largest clipping ratio a group searched by --clip-sym scales or divisors may start at and be tuned to (default 1, "
                    "the reference's clamp; GGUF-only runs: 1.25; the scales reach 1.13 at 4 bits)")
          ->check(CLI::Range(1.0f, 4.0f));
  q->add_option("--outlier-fraction", options.tune.outlier_fraction,
                "leave each step's largest block-output errors, this fraction of them, out of the block loss and its gradient "
                "(SignRoundV2's loss filtering: 0.001 under the reference's enable_alg_ext for bits < 4; default 0)")
      ->check(CLI::Range(0.0, 0.5));
  q->add_flag("--no-loss-mask", no_loss_mask, "count every position in the block loss (the reference skips the last and padding)");
  q->add_option("--pad-token", pad_token, "pad token id the loss skips (default: the model's, if it has one)");
  q->add_option("--layer", layer_overrides, "per-layer override REGEX=BITS[:GROUP[:sym|asym]] or REGEX=fp");
  q->add_flag("--parse-special", parse_special_tokens,
              "control tokens written in the text (\"<|im_start|>\") are those tokens (default: plain text)");
  q->add_option("--gguf-budget", size_budget.size,
                "the gguf:TYPE file's size: bytes (88201792, 84MiB), bits per weight (3.2bpw), a type's size (q3_k_m), or mix "
                "(each gguf:TYPE at its own type's size); each linear layer's, the LM head's and the embedding's ggml type "
                "chosen by measured sensitivity to fit it");
  q->add_option("--avg-bits", bits_budget.avg_bits,
                "average bits per weight of the blocks' linear layers: each layer's scheme chosen among --options by measured "
                "sensitivity (the reference's AutoScheme)")
      ->check(CLI::PositiveNumber);
  q->add_option("--options", scheme_options, "comma-separated schemes --avg-bits chooses among: W2A16, W3A16, W4A16, W8A16 or "
                                             "BITS:GROUP:sym|asym; the first is the checkpoint's own");
  q->add_flag("--ignore-scale-zp-bits", bits_budget.weights_only,
              "--avg-bits counts the weights' bits alone (default: also a 16-bit scale and a zero point per group, as the reference)");
  q->add_option("--budget-types", size_budget.types,
                "comma-separated ggml types --gguf-budget chooses among (default: q2_k,q3_k,q4_0,q4_k,q4_1,q5_0,q5_k,q5_1,q6_k,q8_0)");
  q->add_option("--budget-samples", size_budget.samples, "calibration samples the sensitivities are measured on (--gguf-budget, --avg-bits)")
      ->check(CLI::PositiveNumber);
  q->add_option("--eval", eval_path, "text or token ids (.tokens) to measure perplexity on before and after")->check(CLI::ExistingFile);
  q->add_option("--eval-windows", eval_windows, "512-token windows to score (0: all)")->check(CLI::NonNegativeNumber);
  q->add_option("--threads", threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  q->add_flag("--overwrite", overwrite, "replace an existing output directory (and an interrupted run's DIR.resume)");
  q->add_flag("--resume", resume,
              "continue an interrupted run of the same command after its last finished block (kept in DIR.resume)");
  q->add_option("--device", device_name, "cpu, or cuda (builds with nvcc)")->check(CLI::IsMember({"cpu", "cuda"}));
  q->add_option("--gemm", gemm, "GEMM precision on cuda: bf16 (the reference's amp) or fp32")->check(CLI::IsMember({"bf16", "fp32"}));
  q->add_option("--gpu-memory", gpu_memory_gib,
                "GiB of GPU memory the run may use (default: what is free); the activation streams and the step's split are chosen to fit")
      ->check(CLI::PositiveNumber);
  q->add_option("--gpu-streams", gpu_streams, "where the activation streams live on cuda: auto (the device when they fit), device, host")
      ->check(CLI::IsMember({"auto", "device", "host"}));
  q->add_option("--stream-dtype", stream_dtype, "activation streams on cuda: fp32, or bf16 (half the memory; the reference's)")
      ->check(CLI::IsMember({"fp32", "bf16"}));

  auto* e = app.add_subcommand("eval", "perplexity of a model on token ids");
  std::string text_path;
  Index context = 512;
  std::vector<std::string> quantized_paths;
  e->add_option("--model", model_path, "GGUF file or Hugging Face directory")->required()->check(CLI::ExistingPath);
  e->add_option("--quantized", quantized_paths, "also score these (GGUF files or checkpoint directories)")->check(CLI::ExistingPath);
  e->add_option("--text", text_path, "text (the model's tokenizer) or token ids (.tokens)")->required()->check(CLI::ExistingFile);
  e->add_flag("--parse-special", parse_special_tokens, "control tokens written in the text are those tokens");
  e->add_option("--tokenizer", tokenizer_path, "SentencePiece tokenizer.model for text")->check(CLI::ExistingFile);
  e->add_option("--context", context, "tokens per window")->check(CLI::Range(2, 1 << 20));
  e->add_option("--windows", eval_windows, "windows to score (0: all)")->check(CLI::NonNegativeNumber);
  e->add_option("--threads", threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  bool llama_scoring = false;
  e->add_flag("--llama-perplexity", llama_scoring,
              "score as llama.cpp's llama-perplexity does (a GGUF model's text: BOS first in each window, the second half scored)");
  CLI11_PARSE(app, argc, argv);
  for (const int signal : {SIGINT, SIGTERM})  // unless ignored by whoever started us (nohup, `cmd &` in a script)
    if (std::signal(signal, request_stop) == SIG_IGN) std::signal(signal, SIG_IGN);

  try {
    if (threads > 0) Eigen::setNbThreads(threads);
    if (*e) {
      std::vector<std::string> paths{model_path};
      paths.insert(paths.end(), quantized_paths.begin(), quantized_paths.end());
      std::vector<std::int32_t> tokens;
      WindowScoring scoring;
      for (const std::string& p : paths) {
        const LlamaModel model = load_llama(p);
        if (tokens.empty()) {
          tokens = load_tokens(text_path, tokenizer_path, model.config.vocab, model_path);
          if (llama_scoring) {  // llama.cpp puts BOS first when its vocabulary adds one, as our tokenizer of the GGUF did
            if (fs::is_directory(model_path)) throw Error("--llama-perplexity: --model must be a GGUF file (llama.cpp's scoring of its text)");
            const GgufFile gguf(model_path);
            std::optional<std::int32_t> bos;
            if (gguf.find("tokenizer.ggml.bos_token_id") &&
                tokens.front() == static_cast<std::int32_t>(gguf.get_uint("tokenizer.ggml.bos_token_id")))
              bos = tokens.front();
            scoring = WindowScoring::llama_perplexity(context, bos);
          }
        }
        const PerplexityResult r = perplexity(model, tokens, context, eval_windows, scoring);
        std::printf("perplexity %.4f over %ld tokens (%ld windows of %ld): %s\n", r.perplexity, r.tokens_scored, r.windows,
                    context, p.c_str());
      }
      return 0;
    }
    // recipes of the reference's CLI, then explicit flags on top
    options.tune.iters = 200;
    options.nsamples = 128;
    if (recipe == "best") options.tune.iters = 1000, options.nsamples = 512;
    if (recipe == "light") options.tune.iters = 50, options.tune.lr = options.tune.lr > 0 ? options.tune.lr : 5e-3f;
    // ours: 50 steps at lr 1/50 from the searched clipping reach the reference's 200-step default
    // (docs/accuracy.md, "Time to the reference's accuracy")
    if (recipe == "fast") options.tune.iters = 50;
    if (recipe == "rtn") options.tune.iters = 0;
    if (iters >= 0) options.tune.iters = iters;
    if (nsamples > 0) options.nsamples = nsamples;
    options.spec.symmetry = sym ? Symmetric : Asymmetric;
    if (!scheme.empty()) {
      if (bits_option->count() + group_option->count() + sym_option->count() > 0)
        throw Error("--scheme " + scheme + ": give either --scheme or --bits/--group-size/--sym");
      if (scheme == "MXFP4") options.spec = float_spec(FloatFormat::MxFp4);
      else if (scheme == "MXFP8") options.spec = float_spec(FloatFormat::MxFp8);
      else if (scheme == "MXFP4_RCEIL" || scheme == "MXFP8_RCEIL") {
        options.spec = float_spec(scheme == "MXFP4_RCEIL" ? FloatFormat::MxFp4 : FloatFormat::MxFp8);
        options.spec.act_rceil = true;
      }
      else if (scheme == "NVFP4") options.spec = float_spec(FloatFormat::NvFp4);
      else if (scheme == "FP8_STATIC") options.spec = float_spec(FloatFormat::Fp8);
      else if (scheme == "FP8_BLOCK") options.spec = float_spec(FloatFormat::Fp8Block);
      else options.spec = QuantSpec{std::stoi(scheme.substr(1)), 128, Symmetric};
    }
    options.tune.clip_init = clip_init == "search" ? ClipInit::WeightedSearch : ClipInit::Unit;
    options.streams = streams == "fp" ? ActivationStreams::FullPrecision
                      : streams == "quantized" ? ActivationStreams::Quantized : ActivationStreams::Two;
    options.mask_loss = !no_loss_mask;
    if (pad_token >= 0) options.pad_token = static_cast<std::int32_t>(pad_token);
    const auto formats = parse_formats(format_list);
    // GGUF-only runs default to the settings that beat llama.cpp + imatrix (docs/accuracy.md,
    // "GGUF: the scale-grid start"): llama.cpp's scale search for Q4_0/Q5_0/Q8_0 groups, allowed
    // above the full range, and a fifth of the reference's learning rate.
    // (integer blocks only: gguf:mxfp4 is tuned with the reference's settings for MXFP4)
    if (std::all_of(formats.begin(), formats.end(), [](const OutputFormat& f) { return f.gguf && f.gguf->mix != GgufMix::MXFP4; })) {
      if (!clip_sym_option->count()) clip_sym = "scales";
      if (!ceiling_option->count()) options.tune.clip_search.ceiling = 1.25f;
      if (!lr_option->count() && recipe == "default") options.tune.lr = 0.001f;
    }
    options.tune.clip_search.symmetric = clip_sym == "scales"     ? SymmetricSearch::ScaleGrid
                                         : clip_sym == "divisors" ? SymmetricSearch::DivisorGrid
                                                                  : SymmetricSearch::ClippingGrid;
    const bool scheme_flags = bits_option->count() + group_option->count() + sym_option->count() > 0 || !layer_overrides.empty();
    if (scheme_flags && std::none_of(formats.begin(), formats.end(), [](const OutputFormat& f) { return f.hf.has_value(); }))
      std::fprintf(stderr, "autoround: warning: --bits/--group-size/--sym/--layer apply to the Hugging Face formats; each "
                           "gguf:TYPE is tuned for the block types llama-quantize gives its tensors\n");
    if (options.spec.data_type == DataType::Int) DynamicIntQuantizer check(options.spec);
    else DynamicFloatQuantizer check(options.spec);
    for (const std::string& text : layer_overrides) options.overrides.push_back(parse_override(text, options.spec));
    Device device{device_name == "cuda", Cuda{gemm == "fp32" ? GemmPrecision::Float32 : GemmPrecision::BFloat16}};
    device.backend.streams = gpu_streams == "device" ? StreamPlacement::Device : gpu_streams == "host" ? StreamPlacement::Host : StreamPlacement::Auto;
    device.backend.stream_dtype = stream_dtype == "bf16" ? StreamDtype::BFloat16 : StreamDtype::Float32;
    if (gpu_memory_gib > 0) {  // what nvidia-smi will show: our buffers plus the CUDA context and cuBLAS (~0.6 GiB on an H200)
      const double bytes = (gpu_memory_gib - 0.75) * static_cast<double>(1ull << 30);
      if (bytes <= 0) throw Error("--gpu-memory: at least 1 GiB (0.75 GiB go to the CUDA context and cuBLAS)");
      device.backend.memory_budget = static_cast<std::size_t>(bytes);
    }
#if defined(AUTOROUND_CUDA_PIPELINE)
    if (device.cuda && autoround_cli::cuda_device_count() == 0) throw Error("--device cuda: no CUDA device found");
#else
    if (device.cuda) throw Error("--device cuda: this autoround was built without CUDA (rebuild where nvcc is found)");
#endif
    {
      std::istringstream in(scheme_options);
      for (std::string item; std::getline(in, item, ',');) bits_budget.options.push_back(item);
    }
    if (bits_budget.avg_bits > 0 && (!scheme.empty() || bits_option->count() + group_option->count() + sym_option->count() > 0))
      throw Error("--avg-bits: the schemes come from --options; not with --scheme, --bits, --group-size or --sym");
    if (bits_budget.avg_bits == 0 && !bits_budget.options.empty()) throw Error("--options: needs --avg-bits");
    return quantize(model_path, calibration_path, eval_path, tokenizer_path, output, overwrite, resume, options, eval_windows, formats,
                    device, size_budget, bits_budget);
  } catch (const Interrupted&) {
    const std::string kept = output + ".resume";
    if (std::filesystem::exists(kept))
      std::fprintf(stderr, "\nautoround: interrupted (signal %d): the output was not written; the finished blocks are kept in %s "
                           "(the same command with --resume continues after them)\n", static_cast<int>(stop_signal), kept.c_str());
    else
      std::fprintf(stderr, "\nautoround: interrupted (signal %d): nothing was written\n", static_cast<int>(stop_signal));
    return 128 + stop_signal;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "autoround: error: %s\n", error.what());
    return 1;
  }
}
