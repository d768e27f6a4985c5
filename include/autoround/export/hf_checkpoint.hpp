#pragma once
// Quantized Hugging Face checkpoints in the three layouts AutoRound exports (see docs/formats.md):
//   auto_round  model.safetensors with GPTQ-style qweight/qzeros/scales; asym layers store zero
//               points as they are (packing_format "auto_round"), sym layers use GPTQ v1's
//               zero - 1 ("auto_round:auto_gptq"), as auto-round 0.16.1 switches for sym;
//   auto_gptq   GPTQ v1 (zero - 1) with g_idx, quant_method "gptq";
//   auto_awq    AWQ GEMM packing, quant_method "awq", 4-bit only.
// Tensors the reference leaves in full precision (embeddings, norms, lm_head, layers left out by
// overrides or by shape) are written as float16. config.json carries `quantization_config` with
// the reference's keys; tokenizer.json, tokenizer_config.json and generation_config.json make
// the directory loadable on its own. Every file is written atomically.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../core/atomic_file.hpp"
#include "../core/fp16.hpp"
#include "../format/gguf_reader.hpp"
#include "../format/safetensors.hpp"
#include "../pack/awq.hpp"
#include "../pack/ggml_quantize.hpp"
#include "../pack/gptq.hpp"
#include "quantized_llama.hpp"
#include "tokenizer_files.hpp"

namespace autoround {

enum class HfFormat { AutoRound, AutoGptq, AutoAwq };

inline const char* format_name(HfFormat f) {
  switch (f) {
    case HfFormat::AutoRound: return "auto_round";
    case HfFormat::AutoGptq: return "auto_gptq";
    default: return "auto_awq";
  }
}

/// The version of AutoRound whose checkpoint layout and config keys we reproduce.
inline constexpr const char* kAutoRoundFormatVersion = "0.16.1";

namespace detail {

inline void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& j) {
  const std::string text = j.dump(2) + "\n";
  write_file_atomically(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

inline void add_f16(SafetensorsWriter& w, const std::string& name, const float* data, std::vector<std::int64_t> shape) {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  w.add(name, Dtype::F16, std::move(shape), ggml::quantize(ggml::Type::F16, std::span<const float>(data, n)));
}

/// A float as JSON shows it in a config written by Python: 1e-05, not 9.999999747378752e-06.
inline double short_float(float x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.7g", static_cast<double>(x));
  return std::strtod(buffer, nullptr);
}

inline std::string exact_regex(const std::string& name) {
  std::string r = "^";
  for (char ch : name) {
    if (ch == '.') r += '\\';
    r += ch;
  }
  r += '$';
  return r;
}

}  // namespace detail

/// Where the model came from: a GGUF file (tokenizer files are rebuilt from its metadata) or a
/// Hugging Face directory (its config.json is extended, its tokenizer files are copied).
struct ExportSource {
  const GgufFile* gguf = nullptr;
  std::filesystem::path hf_dir;
};

/// Files of a Hugging Face model directory that belong to the tokenizer and generation settings.
inline constexpr const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                                  "special_tokens_map.json", "vocab.json", "merges.txt",
                                                  "added_tokens.json", "generation_config.json", "chat_template.jinja"};

/// Write `q` into the existing directory `dir` in `format`. Returns the names of the linear
/// layers written in float16 (left in full precision, or not fitting the format).
inline std::vector<std::string> export_hf_checkpoint(const QuantizedLlama<>& q, HfFormat format, const std::filesystem::path& dir,
                                 const ExportSource& source) {
  const LlamaModel& m = q.model;
  const LlamaConfig& c = m.config;
  const QuantSpec& spec = q.options.spec;
  const bool gguf_rope = c.rope_style == RopeStyle::AdjacentPairs;
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  detail::add_f16(w, "model.embed_tokens.weight", m.embedding.data(), {c.vocab, c.hidden});
  detail::add_f16(w, "model.norm.weight", m.final_norm.data(), {c.hidden});
  if (!c.tied_embeddings) detail::add_f16(w, "lm_head.weight", m.output.data(), {c.vocab, c.hidden});

  nlohmann::ordered_json extra = nlohmann::ordered_json::object(), dynamic = nlohmann::ordered_json::object();
  std::vector<std::string> not_converted;
  for (Index b = 0; b < c.layers; ++b) {
    const LlamaBlock& block = m.blocks[static_cast<std::size_t>(b)];
    const std::string prefix = "model.layers." + std::to_string(b) + ".";
    detail::add_f16(w, prefix + "input_layernorm.weight", block.attn_norm.data(), {c.hidden});
    detail::add_f16(w, prefix + "post_attention_layernorm.weight", block.ffn_norm.data(), {c.hidden});
    if (block.q_norm.size() > 0) {  // Qwen3
      detail::add_f16(w, prefix + "self_attn.q_norm.weight", block.q_norm.data(), {block.q_norm.size()});
      detail::add_f16(w, prefix + "self_attn.k_norm.weight", block.k_norm.data(), {block.k_norm.size()});
    }
    for (std::size_t k = 0; k < 3; ++k)  // Qwen2's q/k/v biases, float16 as the reference's QuantLinear keeps them
      if (block.qkv_bias[k].size() > 0)
        detail::add_f16(w, prefix + hf_name(all_linears[k]) + ".bias", block.qkv_bias[k].data(), {block.qkv_bias[k].size()});
    for (Linear l : all_linears) {
      const std::string name = prefix + hf_name(l);
      const bool permuted = gguf_rope && (l == Linear::Query || l == Linear::Key);
      const auto rows = permuted ? hf_rows_from_gguf(block[l].rows(), c.head_dim) : std::vector<Index>{};
      const auto& quantized = q.quantized(b, l);
      // AWQ has no short last group: such layers are written as float16 (listed in
      // modules_to_not_convert) holding their dequantized values, so the checkpoint still computes
      // what the quantized model computes (the reference would leave them unquantized).
      const bool fits = format != HfFormat::AutoAwq || !quantized || quantized->cols() % quantized->layout.group_size() == 0;
      if (!quantized || !fits) {
        const RowMatrix weight = permuted ? permute_rows(block[l], rows) : block[l];
        detail::add_f16(w, name + ".weight", weight.data(), {weight.rows(), weight.cols()});
        extra[name] = {{"bits", 16}, {"data_type", "float"}};
        dynamic["-:" + detail::exact_regex(name)] = nlohmann::ordered_json::object();
        not_converted.push_back(name);
        continue;
      }
      const auto qw = permuted ? permute_rows(*quantized, rows) : *quantized;
      const QuantSpec s = qw.quantizer.spec();
      if (s != spec) {
        nlohmann::ordered_json diff;
        if (s.bits != spec.bits) diff["bits"] = s.bits;
        if (s.group_size != spec.group_size) diff["group_size"] = s.group_size;
        if (s.symmetry != spec.symmetry) diff["sym"] = s.symmetry == Symmetric;
        extra[name] = diff;
        dynamic["+:" + detail::exact_regex(name)] = {{"bits", s.bits}, {"group_size", s.group_size}, {"sym", s.symmetry == Symmetric}};
        detail::require(format != HfFormat::AutoAwq, name + ": AWQ checkpoints hold one scheme; this layer's differs");
      }
      const Index out = qw.rows(), in = qw.cols();
      if (format == HfFormat::AutoAwq) {
        const AwqTensors t = pack_awq(qw, name);
        w.add<std::int32_t>(name + ".qweight", Dtype::I32, {in, out / 8}, t.qweight);
        w.add<std::int32_t>(name + ".qzeros", Dtype::I32, {t.groups(), out / 8}, t.qzeros);
        w.add<std::uint16_t>(name + ".scales", Dtype::F16, {t.groups(), out}, t.scales);
      } else {
        // the packing is chosen once for the checkpoint (packing_format), as the reference does
        const bool v1 = format == HfFormat::AutoGptq || spec.symmetry == Symmetric;
        const GptqTensors t = pack_gptq(qw, v1 ? GptqZeros::MinusOne : GptqZeros::Stored, format == HfFormat::AutoGptq, name);
        w.add<std::int32_t>(name + ".qweight", Dtype::I32, {t.qweight_rows(), out}, t.qweight);
        w.add<std::int32_t>(name + ".qzeros", Dtype::I32, {t.groups(), t.qzeros_cols()}, t.qzeros);
        w.add<std::uint16_t>(name + ".scales", Dtype::F16, {t.groups(), out}, t.scales);
        if (format == HfFormat::AutoGptq) w.add<std::int32_t>(name + ".g_idx", Dtype::I32, {in}, t.g_idx);
      }
    }
  }
  w.write(dir / "model.safetensors");

  // quantization_config: the reference's keys, with its habit of dropping values equal to its defaults
  const TuneOptions& t = q.options.tune;
  nlohmann::ordered_json qc = {{"bits", spec.bits}, {"group_size", spec.group_size}, {"sym", spec.symmetry == Symmetric},
                               {"data_type", "int"}};
  if (t.iters != 200) qc["iters"] = t.iters;
  const float default_lr = t.iters > 0 ? 1.0f / static_cast<float>(t.iters) : 5e-3f;
  if (t.iters > 0 && t.rounding_lr(spec.bits) != default_lr) qc["lr"] = detail::short_float(t.rounding_lr(spec.bits));
  if (t.iters > 0 && t.clipping_lr(spec.bits) != default_lr) qc["minmax_lr"] = detail::short_float(t.clipping_lr(spec.bits));
  if (q.options.nsamples != 128) qc["nsamples"] = q.options.nsamples;
  if (q.options.seqlen != 2048) qc["seqlen"] = q.options.seqlen;
  if (t.batch_size != 8) qc["batch_size"] = t.batch_size;
  if (!t.enable_minmax_tuning) qc["enable_minmax_tuning"] = false;
  qc["autoround_version"] = kAutoRoundFormatVersion;
  qc["block_name_to_quantize"] = "model.layers";
  if (format == HfFormat::AutoRound) {
    qc["quant_method"] = "auto-round";
    qc["packing_format"] = spec.symmetry == Symmetric ? "auto_round:auto_gptq" : "auto_round";
    if (!extra.empty()) qc["extra_config"] = extra;
  } else if (format == HfFormat::AutoGptq) {
    if (!dynamic.empty()) qc["dynamic"] = dynamic;
    qc["lm_head"] = false;
    qc["provider"] = "auto-round";
    qc["quant_method"] = "gptq";
    qc["desc_act"] = false;
    qc["true_sequential"] = false;
    qc["damp_percent"] = 0.01;
  } else {
    qc["provider"] = "auto-round";
    qc["quant_method"] = "awq";
    qc["zero_point"] = spec.symmetry != Symmetric;
    qc["version"] = "gemm";
    qc["modules_to_not_convert"] = not_converted;
  }

  nlohmann::ordered_json config;
  if (source.gguf) {
    const GgufFile& gguf = *source.gguf;
    detail::require(c.rope_divisors.empty(), gguf.path() + ": RoPE scaling stored as rope_freqs / linear factors cannot be "
                                                           "written as a config.json rope_scaling yet");
    const TokenizerFiles tok = tokenizer_files_from_gguf(gguf);
    const bool qwen2 = c.model_type == "qwen2", qwen3 = c.model_type == "qwen3";
    config = {{"architectures", {qwen2 ? "Qwen2ForCausalLM" : qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM"}},
              {"model_type", qwen2 || qwen3 ? c.model_type : "llama"},
              {"hidden_size", c.hidden},
              {"intermediate_size", c.intermediate}, {"num_attention_heads", c.heads}, {"num_key_value_heads", c.kv_heads},
              {"num_hidden_layers", c.layers}, {"head_dim", c.head_dim}, {"hidden_act", "silu"}, {"rms_norm_eps", detail::short_float(c.rms_eps)},
              {"rope_theta", detail::short_float(c.rope_theta)}, {"vocab_size", c.vocab}, {"tie_word_embeddings", c.tied_embeddings},
              {"attention_bias", false}, {"mlp_bias", false}};
    if (qwen2 || qwen3) {
      config.erase("attention_bias");
      config.erase("mlp_bias");
      config["use_sliding_window"] = false;
    }
    const std::string arch = gguf.find("general.architecture") ? gguf.get_string("general.architecture") : "llama";
    if (gguf.find(arch + ".context_length")) config["max_position_embeddings"] = gguf.get_uint(arch + ".context_length");
    for (const char* key : {"bos_token_id", "eos_token_id"})
      if (tok.generation_config.contains(key)) config[key] = tok.generation_config[key];
    detail::write_json(dir / "tokenizer.json", tok.tokenizer);
    detail::write_json(dir / "tokenizer_config.json", tok.tokenizer_config);
    detail::write_json(dir / "generation_config.json", tok.generation_config);
  } else {
    std::ifstream in(source.hf_dir / "config.json");
    try {
      config = nlohmann::ordered_json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error((source.hf_dir / "config.json").string() + ": " + e.what());
    }
    for (const char* file : kTokenizerFiles)
      if (std::filesystem::exists(source.hf_dir / file))
        std::filesystem::copy_file(source.hf_dir / file, dir / file, std::filesystem::copy_options::overwrite_existing);
  }
  config["torch_dtype"] = "float16";
  config["quantization_config"] = qc;
  detail::write_json(dir / "config.json", config);
  detail::write_json(dir / "quantization_config.json", qc);
  return not_converted;
}

}  // namespace autoround
