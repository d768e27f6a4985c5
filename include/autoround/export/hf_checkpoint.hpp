#pragma once
// Quantized Hugging Face checkpoints in the three layouts AutoRound exports (see docs/formats.md):
//   auto_round  model.safetensors with GPTQ-style qweight/qzeros/scales; asym layers store zero
//               points as they are (packing_format "auto_round"), sym layers use GPTQ v1's
//               zero - 1 ("auto_round:auto_gptq"), as auto-round 0.16.1 switches for sym;
//   auto_gptq   GPTQ v1 (zero - 1) with g_idx, quant_method "gptq";
//   auto_awq    AWQ GEMM packing, quant_method "awq", 4-bit only;
//   llm_compressor  compressed-tensors (quant_method "compressed-tensors", what vLLM and
//               llm-compressor read) for MXFP4 / MXFP8 / NVFP4 / FP8_STATIC: the same tensors as
//               auto_round writes for them (auto-round 0.16.1 uses one packer for both; FP8's
//               weight_scale a column), another config;
//   fp8         FP8_BLOCK's tensors under quant_method "fp8" (transformers' FineGrainedFP8, which
//               also serves DeepSeek-V3's checkpoints): auto-round's format "fp8". Its auto_round
//               checkpoint (packing_format "auto_round:fp8", group_size [128, 128]) holds the same
//               tensors, but transformers 5.17 refuses that config (AutoRoundConfig compares the
//               list group_size with 0).
// Tensors the reference leaves in full precision (embeddings, norms, lm_head, layers left out by
// overrides or by shape) are written as float16. config.json carries `quantization_config` with
// the reference's keys; tokenizer.json, tokenizer_config.json and generation_config.json make
// the directory loadable on its own. Every file is written atomically.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../core/atomic_file.hpp"
#include "../core/fp16.hpp"
#include "../format/gguf_reader.hpp"
#include "../format/safetensors.hpp"
#include "../model/gguf_moe.hpp"
#include "../model/model_source.hpp"
#include "../pack/awq.hpp"
#include "../pack/float_tensors.hpp"
#include "../pack/ggml_quantize.hpp"
#include "../pack/gptq.hpp"
#include "quantized_llama.hpp"
#include "tokenizer_files.hpp"

namespace autoround {

enum class HfFormat { AutoRound, AutoGptq, AutoAwq, LlmCompressor, Fp8 };

inline const char* format_name(HfFormat f) {
  switch (f) {
    case HfFormat::AutoRound: return "auto_round";
    case HfFormat::AutoGptq: return "auto_gptq";
    case HfFormat::LlmCompressor: return "llm_compressor";
    case HfFormat::Fp8: return "fp8";
    default: return "auto_awq";
  }
}

/// The reference's data_type string of a scheme.
inline const char* data_type_name(DataType d) {
  switch (d) {
    case DataType::MxFp: return "mx_fp";
    case DataType::NvFp: return "nv_fp";
    case DataType::Fp: return "fp";
    default: return "int";
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

/// The dtype a Hugging Face config.json names ("dtype", transformers 5; else "torch_dtype"):
/// float32, bfloat16 or (otherwise) float16.
inline Dtype config_dtype(const std::filesystem::path& config) {
  std::ifstream in(config);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Dtype::F16;  // (the reader has refused a bad config.json already)
  const auto named = j.contains("dtype") && j["dtype"].is_string() ? j["dtype"] : j.value("torch_dtype", nlohmann::json("float16"));
  const std::string name = named.is_string() ? named.get<std::string>() : "float16";
  return name == "float32" ? Dtype::F32 : name == "bfloat16" ? Dtype::BF16 : Dtype::F16;
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

/// config.json's model_type of a model read from GGUF: llama.cpp's architecture name, or the
/// Hugging Face family's where it differs (to llama.cpp, Mixtral is llama with experts).
inline std::string hf_model_type(const LlamaConfig& c) {
  if (c.model_type == "qwen3moe") return "qwen3_moe";
  if (c.model_type == "qwen2moe") return "qwen2_moe";
  if (c.model_type == "llama" && c.experts > 0) return "mixtral";
  return c.model_type;
}

}  // namespace detail

/// Where the model came from: a GGUF file (tokenizer files are rebuilt from its metadata) or a
/// Hugging Face directory (its config.json is extended, its tokenizer files are copied).
struct ExportSource {
  const GgufFile* gguf = nullptr;
  std::filesystem::path hf_dir;
};

/// Files of a Hugging Face model directory that belong to the tokenizer, generation settings and
/// (vision-language models) the processor: copied as they are.
inline constexpr const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                                  "special_tokens_map.json", "vocab.json", "merges.txt",
                                                  "added_tokens.json", "generation_config.json", "chat_template.jinja",
                                                  // a vision-language model's processor
                                                  "preprocessor_config.json", "processor_config.json", "chat_template.json",
                                                  "video_preprocessor_config.json"};

/// Writes the tensors of a quantized model in one of the three layouts, block by block, and then
/// the metadata files (config.json with quantization_config, quantization_config.json, the
/// tokenizer files). export_hf_checkpoint puts every tensor in one model.safetensors;
/// HfShardWriter writes each block to its own shard as soon as it is tuned.
class HfTensorWriter {
 public:
  HfTensorWriter(HfFormat format, const LlamaConfig& config, const ModelQuantOptions& options, const ExportSource& source)
      : format_(format), c_(config), options_(options), spec_(options.spec), source_(source),
        gguf_rope_(config.rope_style == RopeStyle::AdjacentPairs) {
    if (source_.gguf) c_.model_type = detail::hf_model_type(c_);  // (names the experts' tensors: Mixtral's block_sparse_moe)
    else model_dtype_ = detail::config_dtype(source_.hf_dir / "config.json");
  }

  /// The embedding, final norm and LM head (float16).
  void add_globals(SafetensorsWriter& w, const RowMatrix& embedding, const Eigen::VectorXf& final_norm, const RowMatrix& output) const {
    detail::add_f16(w, c_.hf_prefix + "embed_tokens.weight", embedding.data(), {c_.vocab, c_.hidden});
    add_norm(w, c_.hf_prefix + "norm.weight", final_norm);
    if (!c_.tied_embeddings) detail::add_f16(w, c_.hf_lm_head, output.data(), {c_.vocab, c_.hidden});
    add_beside_language_model(w);
  }

  /// The same from a model source, the embedding and the LM head converted a slice of rows at a
  /// time (host memory: a slice; the writer parks the float16 rows, HfShardWriter on disk).
  template <ModelSource S>
  void add_globals(SafetensorsWriter& w, const S& source) const {
    const auto add_rows = [&](const std::string& name, auto&& rows_of) {
      w.add_pieces(name, Dtype::F16, {c_.vocab, c_.hidden}, static_cast<std::size_t>(c_.vocab * c_.hidden) * 2, [&](auto&& put) {
        std::vector<std::int32_t> ids;
        for (Index first = 0; first < c_.vocab; first += 4096) {
          ids.resize(static_cast<std::size_t>(std::min<Index>(4096, c_.vocab - first)));
          for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(first + static_cast<Index>(i));
          const RowMatrix rows = rows_of(std::span<const std::int32_t>(ids));
          put(std::span<const std::byte>(ggml::quantize(ggml::Type::F16, std::span<const float>(rows.data(), static_cast<std::size_t>(rows.size())))));
        }
      });
    };
    add_rows(c_.hf_prefix + "embed_tokens.weight", [&](std::span<const std::int32_t> ids) { return source.embedding_rows(ids); });
    add_norm(w, c_.hf_prefix + "norm.weight", source.final_norm());
    if (!c_.tied_embeddings) add_rows(c_.hf_lm_head, [&](std::span<const std::int32_t> ids) { return source.output_rows(ids); });
    if (c_.per_layer_input > 0) {  // Gemma 4 E2B / E4B: the table a slice of rows at a time (all layers' columns), float16
      if constexpr (PerLayerEmbeddingSource<S>) {
        const Index p = c_.per_layer_input, width = c_.layers * p;
        w.add_pieces(c_.hf_prefix + "embed_tokens_per_layer.weight", Dtype::F16, {c_.per_layer_vocab, width},
                     static_cast<std::size_t>(c_.per_layer_vocab * width) * 2, [&](auto&& put) {
                       std::vector<std::int32_t> ids;
                       for (Index first = 0; first < c_.per_layer_vocab; first += 4096) {
                         ids.resize(static_cast<std::size_t>(std::min<Index>(4096, c_.per_layer_vocab - first)));
                         for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(first + static_cast<Index>(i));
                         RowMatrix rows(static_cast<Index>(ids.size()), width);
                         for (Index l = 0; l < c_.layers; ++l) rows.middleCols(l * p, p) = source.per_layer_rows(ids, l);
                         put(std::span<const std::byte>(ggml::quantize(ggml::Type::F16, std::span<const float>(rows.data(), static_cast<std::size_t>(rows.size())))));
                       }
                     });
        add_per_layer_projection(w, source.per_layer_projection(), source.per_layer_norm());
      } else {
        throw Error(source.name() + ": per-layer embeddings (Gemma 4 E2B / E4B) are not read from this source");
      }
    }
    add_beside_language_model(w);
  }

  /// Gemma 4 E2B / E4B's per-layer embedding, held whole (float16, as the embedding).
  void add_per_layer_embedding(SafetensorsWriter& w, const PerLayerEmbedding& e) const {
    detail::add_f16(w, c_.hf_prefix + "embed_tokens_per_layer.weight", e.table.data(), {e.table.rows(), e.table.cols()});
    add_per_layer_projection(w, e.projection, e.norm);
  }
  void add_per_layer_projection(SafetensorsWriter& w, const RowMatrix& projection, const Eigen::VectorXf& norm) const {
    detail::add_f16(w, c_.hf_prefix + "per_layer_model_projection.weight", projection.data(), {projection.rows(), projection.cols()});
    add_norm(w, c_.hf_prefix + "per_layer_projection_norm.weight", norm);
  }

  /// A vision-language checkpoint's tensors outside its language model (vision tower, projector),
  /// copied byte for byte from the source: names, types, shapes and bytes as they were.
  void add_beside_language_model(SafetensorsWriter& w) const {
    if (!c_.vision_language || source_.hf_dir.empty()) return;
    const SafetensorsCheckpoint source(source_.hf_dir);
    for (const std::string& name : source.names()) {
      if (name.rfind(c_.hf_prefix, 0) == 0 || name == c_.hf_lm_head) continue;
      const SafetensorsTensor& t = source.tensor(name);
      w.add(name, t.dtype, t.shape, t.data);
      source.release(name);
    }
  }

  /// A layer's name as auto-round's loader looks it up in extra_config: a vision-language model's
  /// under transformers 5's in-memory prefix (model.language_model.), others as written.
  std::string loader_name(const std::string& name) const {
    if (c_.model_type == "mixtral")  // saved under block_sparse_moe, named "mlp" in memory (as the reference's extra_config)
      if (const auto at = name.find(".block_sparse_moe."); at != std::string::npos)
        return name.substr(0, at) + ".mlp." + name.substr(at + std::string(".block_sparse_moe.").size());
    if (!c_.vision_language || name.rfind(c_.hf_prefix, 0) != 0) return name;
    return "model.language_model." + name.substr(c_.hf_prefix.size());
  }

  /// A linear layer inside a block written in float16: listed for each format's loader as one
  /// it must not replace (extra_config bits 16, GPTQ's dynamic "-:", AWQ's modules_to_not_convert).
  void keep_float(const std::string& name) {
    extra_[loader_name(name)] = {{"bits", 16}, {"data_type", "float"}};
    if (spec_.act_bits <= 8)  // (a W4A4 scheme's float layer: without these its loader looks for a 16-bit kernel with 4-bit inputs)
      extra_[loader_name(name)]["act_bits"] = 16, extra_[loader_name(name)]["act_data_type"] = "float";
    dynamic_["-:" + detail::exact_regex(name)] = nlohmann::ordered_json::object();
    not_converted_.push_back(name);
  }

  /// An RMSNorm weight in float16 as the checkpoint's family stores it (Gemma: w of its 1 + w).
  void add_norm(SafetensorsWriter& w, const std::string& name, const Eigen::VectorXf& factor) const {
    if (!c_.norm_weight_plus_one) return detail::add_f16(w, name, factor.data(), {factor.size()});
    const Eigen::VectorXf stored = factor.array() - 1.0f;
    detail::add_f16(w, name, stored.data(), {stored.size()});
  }

  /// Block b: norms and biases in float16, each linear layer (linear slot: a mixture of experts'
  /// are named per expert, "mlp.experts.E.gate_proj", as the reference exports them) packed, or
  /// float16 where it stayed in full precision or does not fit the format; a mixture of experts'
  /// router ("mlp.gate.weight") and shared-expert gate in float16, the grouped router's
  /// correction bias in float32.
  template <class Results>
  void add_block(SafetensorsWriter& w, Index b, const LlamaBlock& block, const Results& results) {
    const LlamaConfig& c = c_;
    const std::string prefix = c.hf_prefix + "layers." + std::to_string(b) + ".";
    detail::require(c.llama_shaped() || !source_.gguf, "model.layers." + std::to_string(b) + ": a " + c.model_type +
                                                          " model read from GGUF cannot be written as a Hugging Face checkpoint yet "
                                                          "(its config.json); use a Hugging Face directory as the source, or --format gguf");
    add_norm(w, prefix + "input_layernorm.weight", block.attn_norm);
    if (block.post_attn_norm.size() > 0) {  // Gemma's sandwich norms
      add_norm(w, prefix + "post_attention_layernorm.weight", block.post_attn_norm);
      add_norm(w, prefix + "pre_feedforward_layernorm.weight", block.ffn_norm);
      add_norm(w, prefix + "post_feedforward_layernorm.weight", block.post_ffn_norm);
      if (block.moe && block.moe->beside_mlp) {  // Gemma 4's experts beside the MLP: their norms
        add_norm(w, prefix + "pre_feedforward_layernorm_2.weight", block.moe->beside_mlp->input_norm);
        add_norm(w, prefix + "post_feedforward_layernorm_1.weight", block.moe->beside_mlp->mlp_norm);
        add_norm(w, prefix + "post_feedforward_layernorm_2.weight", block.moe->beside_mlp->experts_norm);
      }
    } else {
      add_norm(w, prefix + "post_attention_layernorm.weight", block.ffn_norm);
    }
    if (block.mla) {  // DeepSeek-V3's latent norms (q_a_proj is a slot, below)
      if (block.mla->query_a_norm.size() > 0) add_norm(w, prefix + "self_attn.q_a_layernorm.weight", block.mla->query_a_norm);
      add_norm(w, prefix + "self_attn.kv_a_layernorm.weight", block.mla->kv_a_norm);
    }
    if (block.q_norm.size() > 0) {  // Qwen3, Gemma 3 (Gemma 4's kv-shared layers: no k_norm)
      add_norm(w, prefix + "self_attn.q_norm.weight", block.q_norm);
      if (block.k_norm.size() > 0) add_norm(w, prefix + "self_attn.k_norm.weight", block.k_norm);
    }
    if (block.per_layer) add_norm(w, prefix + "post_per_layer_input_norm.weight", block.per_layer->post_norm);  // (its linears: slots)
    for (std::size_t k = 0; k < 3; ++k)  // Qwen2's q/k/v biases, float16 as the reference's QuantLinear keeps them
      if (block.qkv_bias[k].size() > 0)
        detail::add_f16(w, prefix + hf_name(all_linears[k]) + ".bias", block.qkv_bias[k].data(), {block.qkv_bias[k].size()});
    if (block.output_bias.size() > 0)  // GPT-OSS
      detail::add_f16(w, prefix + hf_name(Linear::Output) + ".bias", block.output_bias.data(), {block.output_bias.size()});
    if (block.sinks.size() > 0) detail::add_f16(w, prefix + "self_attn.sinks", block.sinks.data(), {block.sinks.size()});
    if (c.model_type == "gemma4_text")  // Gemma 4's output scale, a stored buffer
      w.add(prefix + "layer_scalar", Dtype::F32, {1}, std::span<const float>(&block.layer_scalar, 1));
    if (block.moe && c.model_type == "gpt_oss") {  // its router is not a Linear (nothing to list as float); experts' biases
      const MoeWeights& m = block.moe->weights;
      detail::add_f16(w, prefix + "mlp.router.weight", m.router.data(), {m.router.rows(), m.router.cols()});
      detail::add_f16(w, prefix + "mlp.router.bias", m.router_bias.data(), {m.router_bias.size()});
      for (std::size_t e = 0; e < m.experts.size(); ++e) {
        const ExpertWeights& ex = m.experts[e];
        const std::string q = prefix + "mlp.experts." + std::to_string(e) + ".";
        detail::add_f16(w, q + "gate_proj.bias", ex.gate_bias.data(), {ex.gate_bias.size()});
        detail::add_f16(w, q + "up_proj.bias", ex.up_bias.data(), {ex.up_bias.size()});
        detail::add_f16(w, q + "down_proj.bias", ex.down_bias.data(), {ex.down_bias.size()});
      }
    } else if (block.moe && block.moe->beside_mlp) {  // Gemma 4: router.proj kept float (the reference quantizes it: its
      // keep-list names only ".gate"; llama.cpp never quantizes ffn_gate_inp), its two scales in float32 as transformers holds them
      const MoeWeights& m = block.moe->weights;
      const Eigen::VectorXf& scale = block.moe->beside_mlp->router_scale;
      detail::add_f16(w, prefix + "router.proj.weight", m.router.data(), {m.router.rows(), m.router.cols()});
      keep_float(prefix + "router.proj");
      w.add(prefix + "router.scale", Dtype::F32, {scale.size()}, std::span<const float>(scale.data(), static_cast<std::size_t>(scale.size())));
      w.add(prefix + "router.per_expert_scale", Dtype::F32, {m.expert_scale.size()},
            std::span<const float>(m.expert_scale.data(), static_cast<std::size_t>(m.expert_scale.size())));
    } else if (block.moe) {
      detail::require(!source_.gguf || c.model_type == "qwen3_moe" || c.model_type == "qwen2_moe" || c.model_type == "mixtral",
                      "model.layers." + std::to_string(b) + ": a " + c.model_type +
                          " mixture-of-experts model read from GGUF cannot be written as a Hugging Face checkpoint yet (its "
                          "config.json: qwen3moe, qwen2moe and Mixtral's can); use a Hugging Face directory as the source, or --format gguf");
      const MoeWeights& m = block.moe->weights;
      const std::string router = prefix + (c.model_type == "mixtral" ? "block_sparse_moe.gate" : "mlp.gate");  // (as the reference saves it)
      add_float(w, router + ".weight", m.router.data(), {m.router.rows(), m.router.cols()});
      keep_float(router);  // a Linear inside the block: loaders must be told it stays float, as the reference does
      if (m.correction_bias.size() > 0)
        w.add(prefix + "mlp.gate.e_score_correction_bias", Dtype::F32, {m.correction_bias.size()},
              std::span<const float>(m.correction_bias.data(), static_cast<std::size_t>(m.correction_bias.size())));
      if (m.shared_gate.size() > 0) {
        detail::add_f16(w, prefix + "mlp.shared_expert_gate.weight", m.shared_gate.data(), {1, m.shared_gate.size()});
        keep_float(prefix + "mlp.shared_expert_gate");
      }
    }
    const std::vector<LinearSlot> slots = linear_slots(block);
    if (c.model_type == "phi3") {  // fused tensors: qkv_proj = [q; k; v], gate_up_proj = [gate; up]
      add_fused(w, prefix + "self_attn.qkv_proj", block, results, slots, {0, 1, 2});
      add_fused(w, prefix + "mlp.gate_up_proj", block, results, slots, {4, 5});
    }
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const LinearSlot& slot = slots[i];
      const Linear l = slot.role;
      if (c.model_type == "phi3" && l != Linear::Output && l != Linear::Down) continue;  // fused above
      const std::string name = prefix + hf_name(slot, c.model_type);
      const bool permuted = gguf_rope_ && slot.expert == LinearSlot::own && (l == Linear::Query || l == Linear::Key);
      const auto rows = permuted ? hf_rows_from_gguf(linear_shape(c_, l).first, c_.head_dim) : std::vector<Index>{};
      const auto& quantized = result_at(results, i);
      if (!quantized) {
        const RowMatrix values = slot_weight(block, slot);
        add_layer(w, name, decltype(&*quantized){}, permuted ? permute_rows(values, rows) : values);
      } else if (permuted) {
        const auto qw = permute_rows(*quantized, rows);
        add_layer(w, name, &qw, RowMatrix());
      } else {
        add_layer(w, name, &*quantized, RowMatrix());
      }
    }
  }

  /// A float tensor: float16, but where transformers 5 renames the key on load (Mixtral's
  /// block_sparse_moe. -> mlp.) it keeps the stored dtype in a pre-quantized checkpoint instead of
  /// taking the model's: there in the model's dtype (config.json's), as the reference keeps its
  /// source's (a float16 router in a float32 model stops Mixtral's forward: "expected m1 and m2
  /// to have the same dtype").
  void add_float(SafetensorsWriter& w, const std::string& name, const float* data, std::vector<std::int64_t> shape) const {
    if (c_.model_type != "mixtral" || name.find(".block_sparse_moe.") == std::string::npos || model_dtype_ == Dtype::F16)
      return detail::add_f16(w, name, data, std::move(shape));
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    if (model_dtype_ == Dtype::F32) return w.add(name, Dtype::F32, std::move(shape), std::span<const float>(data, n));
    std::vector<std::uint16_t> bits(n);
    for (std::size_t i = 0; i < n; ++i) bits[i] = float_to_bf16_bits(data[i]);
    w.add<std::uint16_t>(name, Dtype::BF16, std::move(shape), bits);
  }

  /// One linear layer: packed in the format, or float16 where it stayed in full precision
  /// (`quantized` null: `values`) or does not fit the format.
  template <class QW>
  void add_layer(SafetensorsWriter& w, const std::string& name, const QW* quantized, const RowMatrix& values) {
    // AWQ has no short last group: such layers are written as float16 (listed in
    // modules_to_not_convert) holding their dequantized values, so the checkpoint still computes
    // what the quantized model computes (the reference would leave them unquantized).
    const bool fits = format_ != HfFormat::AutoAwq || !quantized || quantized->cols() % quantized->layout.group_size() == 0;
    if (!quantized || !fits) {
      if (quantized) ++unfitting_;
      // a quantized layer's weight is its results' (a streaming run's sink gets it released)
      const RowMatrix weight = quantized ? quantized->dequantize() : values;
      add_float(w, name + ".weight", weight.data(), {weight.rows(), weight.cols()});
      keep_float(name);
      return;
    }
    const QW& qw = *quantized;
    const QuantSpec s = qw.quantizer.spec();
    if (s != spec_) {
      nlohmann::ordered_json diff;
      if (s.bits != spec_.bits) diff["bits"] = s.bits;
      if (s.group_size != spec_.group_size) diff["group_size"] = s.group_size;
      if (s.symmetry != spec_.symmetry) diff["sym"] = s.symmetry == Symmetric;
      if (s.data_type != spec_.data_type) diff["data_type"] = data_type_name(s.data_type);
      extra_[loader_name(name)] = diff;
      dynamic_["+:" + detail::exact_regex(name)] = {{"bits", s.bits}, {"group_size", s.group_size}, {"sym", s.symmetry == Symmetric}};
      detail::require(format_ != HfFormat::AutoAwq, name + ": AWQ checkpoints hold one scheme; this layer's differs");
    }
    const Index out = qw.rows(), in = qw.cols();
    if constexpr (FloatCodeQuantizer<std::decay_t<decltype(qw.quantizer)>>) {  // MXFP4 / MXFP8 / NVFP4
      const bool block = qw.quantizer.format() == FloatFormat::Fp8Block;
      detail::require(format_ == HfFormat::AutoRound || format_ == HfFormat::LlmCompressor || (block && format_ == HfFormat::Fp8),
                      name + ": floating-point formats are written as auto_round or llm_compressor checkpoints (FP8_BLOCK also as fp8)");
      if (block) {  // FP8_BLOCK: E4M3 codes, one scale per 128 x 128 tile, [ceil(out / 128), ceil(in / 128)]
        const std::vector<std::int64_t> tiles{qw.layout.row_bands(), qw.layout.groups_per_row()};
        w.add<std::uint8_t>(name + ".weight", Dtype::F8_E4M3, {out, in}, qw.codes);
        if (format_ == HfFormat::LlmCompressor) {  // the run's float32 scales, as auto-round's pack_layer keeps them
          w.add<float>(name + ".weight_scale", Dtype::F32, tiles, qw.scales);
        } else {  // the model's dtype, bfloat16: a multiplier despite the name (DeepSeek-V3's and auto-round's)
          std::vector<std::uint16_t> bf16;
          for (float sc : qw.scales) bf16.push_back(float_to_bf16_bits(sc));
          w.add<std::uint16_t>(name + ".weight_scale_inv", Dtype::BF16, tiles, bf16);
        }
        return;
      }
      const FloatTensors t = pack_float(qw, name);
      if (qw.quantizer.format() == FloatFormat::Fp8) {  // FP8_STATIC: compressed-tensors keeps the scale as a column
        w.add<std::uint8_t>(name + ".weight", Dtype::F8_E4M3, {out, in}, t.weight);
        w.add<std::uint16_t>(name + ".weight_scale", Dtype::BF16,
                             format_ == HfFormat::LlmCompressor ? std::vector<std::int64_t>{out, 1} : std::vector<std::int64_t>{out},
                             t.bf16_scale);
        if (s.act_bits <= 8) w.add<std::uint16_t>(name + ".input_scale", Dtype::BF16, {1}, std::vector<std::uint16_t>{t.bf16_input_scale});
        return;
      }
      if (t.packed_pairs) w.add<std::uint8_t>(name + ".weight_packed", Dtype::U8, {out, in / 2}, t.weight);
      else w.add<std::uint8_t>(name + ".weight", Dtype::F8_E4M3, {out, in}, t.weight);
      w.add<std::uint8_t>(name + ".weight_scale", t.e4m3_scales ? Dtype::F8_E4M3 : Dtype::U8, {out, qw.layout.groups_per_row()}, t.scale);
      if (qw.quantizer.format() == FloatFormat::NvFp4) {
        w.add<float>(name + ".weight_global_scale", Dtype::F32, {1}, std::vector<float>{t.global_scale});
        if (s.act_bits <= 8)  // the activations' static global scale, for W4A4 only
          w.add<float>(name + ".input_global_scale", Dtype::F32, {1}, std::vector<float>{t.input_global_scale});
      }
      return;
    }
    detail::require(format_ != HfFormat::LlmCompressor, name + ": llm_compressor checkpoints hold MXFP4 / MXFP8 / NVFP4 layers here; "
                                                               "integer schemes are written as auto_round, auto_gptq or auto_awq");
    if (format_ == HfFormat::AutoAwq) {
      const AwqTensors t = pack_awq(qw, name);
      w.add<std::int32_t>(name + ".qweight", Dtype::I32, {in, out / 8}, t.qweight);
      w.add<std::int32_t>(name + ".qzeros", Dtype::I32, {t.groups(), out / 8}, t.qzeros);
      w.add<std::uint16_t>(name + ".scales", Dtype::F16, {t.groups(), out}, t.scales);
    } else {
      // the packing is chosen once for the checkpoint (packing_format), as the reference does
      const bool v1 = format_ == HfFormat::AutoGptq || spec_.symmetry == Symmetric;
      const GptqTensors t = pack_gptq(qw, v1 ? GptqZeros::MinusOne : GptqZeros::Stored, format_ == HfFormat::AutoGptq, name);
      w.add<std::int32_t>(name + ".qweight", Dtype::I32, {t.qweight_rows(), out}, t.qweight);
      w.add<std::int32_t>(name + ".qzeros", Dtype::I32, {t.groups(), t.qzeros_cols()}, t.qzeros);
      w.add<std::uint16_t>(name + ".scales", Dtype::F16, {t.groups(), out}, t.scales);
      if (format_ == HfFormat::AutoGptq) w.add<std::int32_t>(name + ".g_idx", Dtype::I32, {in}, t.g_idx);
    }
  }

  /// A fused checkpoint tensor (Phi-3) from several slots' results: their rows stacked, packed as
  /// one layer when every part was quantized alike; float16 of their values when none or only some
  /// were (a fused tensor holds one scheme).
  template <class Results>
  void add_fused(SafetensorsWriter& w, const std::string& name, const LlamaBlock& block, const Results& results,
                 const std::vector<LinearSlot>& slots, std::initializer_list<std::size_t> parts) {
    using QW = std::decay_t<decltype(*result_at(results, 0))>;
    std::vector<const QW*> quantized;
    for (std::size_t i : parts)
      if (const auto& q = result_at(results, i)) quantized.push_back(&*q);
    if (quantized.size() == parts.size()) {
      bool alike = true;
      for (const QW* q : quantized) alike = alike && q->quantizer.spec() == quantized.front()->quantizer.spec();
      if (alike) {
        const QW stacked = stack_rows(quantized, name);
        return add_layer(w, name, &stacked, RowMatrix());
      }
    }
    Index rows = 0;  // a quantized part's float weight may be released already (streaming): its results' shape
    for (std::size_t i : parts) rows += result_at(results, i) ? result_at(results, i)->rows() : slot_weight(block, slots[i]).rows();
    RowMatrix values(rows, c_.hidden);
    Index at = 0;
    for (std::size_t i : parts) {
      const auto& q = result_at(results, i);
      const RowMatrix part = q ? q->dequantize() : slot_weight(block, slots[i]);
      values.middleRows(at, part.rows()) = part;
      at += part.rows();
    }
    add_layer(w, name, static_cast<const QW*>(nullptr), values);
  }

  /// Linear layers written in float16 (left in full precision, or not fitting the format; a
  /// mixture of experts' routers and shared-expert gates too).
  const std::vector<std::string>& not_converted() const { return not_converted_; }
  /// Of those, the quantized layers whose shape the format cannot hold (AWQ: a short last group).
  std::size_t unfitting() const { return unfitting_; }

  /// config.json (with quantization_config), quantization_config.json and the tokenizer files.
  void write_metadata(const std::filesystem::path& dir) const {
    // quantization_config: the reference's keys, with its habit of dropping values equal to its defaults
    const TuneOptions& t = options_.tune;
    nlohmann::ordered_json qc = {{"bits", spec_.bits}, {"group_size", spec_.group_size}, {"sym", spec_.symmetry == Symmetric},
                                 {"data_type", data_type_name(spec_.data_type)}};
    const bool float_format = spec_.data_type == DataType::MxFp || spec_.data_type == DataType::NvFp;
    const bool fp8_block = spec_.data_type == DataType::Fp && spec_.group_rows > 1;
    const bool fp8_static = spec_.data_type == DataType::Fp && !fp8_block;
    if (fp8_block) {  // FP8_BLOCK as auto-round writes it (its formats auto_round and fp8 share these keys)
      qc["group_size"] = {spec_.group_rows, spec_.group_size};
      if (spec_.act_bits <= 8)
        qc.update({{"act_bits", 8}, {"act_data_type", "fp"}, {"act_dynamic", true}, {"act_group_size", spec_.group_size}, {"act_sym", true}});
      qc["weight_block_size"] = {spec_.group_rows, spec_.group_size};
      qc["fmt"] = "e4m3";
      if (spec_.act_bits <= 8) qc["activation_scheme"] = "dynamic";
    }
    if (fp8_static) {  // FP8_STATIC as auto-round writes it (its loader's torch_fp8_static matches these keys)
      qc["bits"] = 8;
      qc["group_size"] = -1;
      qc["fmt"] = "e4m3";
      if (spec_.act_bits <= 8)
        qc.update({{"act_bits", 8}, {"act_data_type", "fp"}, {"act_dynamic", false}, {"act_group_size", 0}, {"act_sym", true},
                   {"activation_scheme", "static"}});
    }
    if (float_format && spec_.act_bits > 8) qc["act_bits"] = 16;
    if (float_format && spec_.act_bits <= 8) {  // the presets' activation quantization (what auto-round's loader matches its kernels on)
      qc["act_bits"] = spec_.bits;
      qc["act_group_size"] = spec_.group_size;
      qc["act_sym"] = true;
      qc["act_data_type"] = spec_.data_type == DataType::NvFp ? "nv_fp4_with_static_gs" : spec_.act_rceil ? "mx_fp_rceil" : "mx_fp";
      qc["act_dynamic"] = true;
    }
    if (t.iters != 200) qc["iters"] = t.iters;
    const float default_lr = t.iters > 0 ? 1.0f / static_cast<float>(t.iters) : 5e-3f;
    if (t.iters > 0 && t.rounding_lr(spec_.bits) != default_lr) qc["lr"] = detail::short_float(t.rounding_lr(spec_.bits));
    if (t.iters > 0 && t.clipping_lr(spec_.bits) != default_lr) qc["minmax_lr"] = detail::short_float(t.clipping_lr(spec_.bits));
    if (options_.nsamples != 128) qc["nsamples"] = options_.nsamples;
    if (options_.seqlen != 2048) qc["seqlen"] = options_.seqlen;
    if (t.batch_size != 8) qc["batch_size"] = t.batch_size;
    if (!t.enable_minmax_tuning) qc["enable_minmax_tuning"] = false;
    qc["autoround_version"] = kAutoRoundFormatVersion;
    // a vision-language model's: its language model's blocks, as transformers 5 names them in memory
    // (what auto-round 0.16.1's loader matches: it maps a file name like language_model.model.layers
    // to model.language_model.model.layers, which names nothing) and as the file names them
    qc["block_name_to_quantize"] = c_.vision_language && c_.hf_prefix != "model.language_model."
                                       ? "model.language_model.layers," + c_.hf_prefix + "layers"
                                       : c_.hf_prefix + "layers";
    if (format_ == HfFormat::AutoRound) {
      qc["quant_method"] = "auto-round";
      qc["packing_format"] = fp8_block      ? "auto_round:fp8"
                             : fp8_static   ? "auto_round:fp8_static"
                             : float_format ? "auto_round:llm_compressor"
                             : spec_.symmetry == Symmetric ? "auto_round:auto_gptq" : "auto_round";
      if (!extra_.empty()) qc["extra_config"] = extra_;
    } else if (format_ == HfFormat::LlmCompressor) {
      qc = compressed_tensors_config();
    } else if (format_ == HfFormat::Fp8) {
      detail::require(fp8_block, "fp8: the fp8 format holds FP8_BLOCK (128 x 128 tiles) checkpoints");
      qc["quant_method"] = "fp8";
      for (const std::string& name : not_converted_) qc["ignored_layers"].push_back(loader_name(name));
    } else if (format_ == HfFormat::AutoGptq) {
      if (!dynamic_.empty()) qc["dynamic"] = dynamic_;
      qc["lm_head"] = false;
      qc["provider"] = "auto-round";
      qc["quant_method"] = "gptq";
      qc["desc_act"] = false;
      qc["true_sequential"] = false;
      qc["damp_percent"] = 0.01;
    } else {
      qc["provider"] = "auto-round";
      qc["quant_method"] = "awq";
      qc["zero_point"] = spec_.symmetry != Symmetric;
      qc["version"] = "gemm";
      qc["modules_to_not_convert"] = not_converted_;
    }

    nlohmann::ordered_json config;
    if (source_.gguf) {
      const GgufFile& gguf = *source_.gguf;
      detail::require(c_.rope_divisors.empty(), gguf.path() + ": RoPE scaling stored as rope_freqs / linear factors cannot be "
                                                             "written as a config.json rope_scaling yet");
      const TokenizerFiles tok = tokenizer_files_from_gguf(gguf);
      config = gguf_model_config(gguf);
      const std::string arch = gguf.find("general.architecture") ? gguf.get_string("general.architecture") : "llama";
      if (gguf.find(arch + ".context_length")) config["max_position_embeddings"] = gguf.get_uint(arch + ".context_length");
      for (const char* key : {"bos_token_id", "eos_token_id"})
        if (tok.generation_config.contains(key)) config[key] = tok.generation_config[key];
      detail::write_json(dir / "tokenizer.json", tok.tokenizer);
      detail::write_json(dir / "tokenizer_config.json", tok.tokenizer_config);
      detail::write_json(dir / "generation_config.json", tok.generation_config);
    } else {
      std::ifstream in(source_.hf_dir / "config.json");
      try {
        config = nlohmann::ordered_json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw Error((source_.hf_dir / "config.json").string() + ": " + e.what());
      }
      for (const char* file : kTokenizerFiles)
        if (std::filesystem::exists(source_.hf_dir / file))
          std::filesystem::copy_file(source_.hf_dir / file, dir / file, std::filesystem::copy_options::overwrite_existing);
    }
    config["torch_dtype"] = "float16";
    config["quantization_config"] = qc;
    detail::write_json(dir / "config.json", config);
    detail::write_json(dir / "quantization_config.json", qc);
  }

  /// config.json of a model read from GGUF, as transformers 5.17 writes it for the family (RoPE
  /// theta also under the older top-level key). What GGUF does not store is what llama.cpp's graph
  /// computes: SiLU; every layer a mixture of experts; the chosen experts' weights renormalized
  /// for qwen3moe and Mixtral, not for qwen2moe (build_moe_ffn's norm_w, hard-coded per graph);
  /// no sliding window; attention biases where the file has them.
  nlohmann::ordered_json gguf_model_config(const GgufFile& gguf) const {
    const std::string& type = c_.model_type;
    const bool qwen2 = type == "qwen2", qwen3 = type == "qwen3", mixtral = type == "mixtral";
    const bool qwen2_moe = type == "qwen2_moe", qwen3_moe = type == "qwen3_moe", moe = c_.experts > 0;
    detail::require(type == "llama" || qwen2 || qwen3 || mixtral || qwen2_moe || qwen3_moe,
                    gguf.path() + ": a " + type + " model read from GGUF cannot be written as a Hugging Face checkpoint yet (its config.json)");
    const bool biased = gguf.find_tensor("blk.0.attn_q.bias") != nullptr;
    detail::require(!biased || qwen2 || qwen2_moe || qwen3_moe,
                    gguf.path() + ": attention biases (blk.0.attn_q.bias) have no config.json key in a " + type + " checkpoint");
    static const std::map<std::string, std::string> architectures = {
        {"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
        {"mixtral", "MixtralForCausalLM"}, {"qwen2_moe", "Qwen2MoeForCausalLM"}, {"qwen3_moe", "Qwen3MoeForCausalLM"}};
    nlohmann::ordered_json config = {
        {"architectures", {architectures.at(type)}}, {"model_type", type}, {"hidden_size", c_.hidden},
        {"intermediate_size", c_.intermediate}, {"num_attention_heads", c_.heads}, {"num_key_value_heads", c_.kv_heads},
        {"num_hidden_layers", c_.layers}, {"head_dim", c_.head_dim}, {"hidden_act", "silu"}, {"rms_norm_eps", detail::short_float(c_.rms_eps)},
        {"rope_theta", detail::short_float(c_.rope_theta)},
        {"rope_parameters", {{"rope_theta", detail::short_float(c_.rope_theta)}, {"rope_type", "default"}}},
        {"vocab_size", c_.vocab}, {"tie_word_embeddings", c_.tied_embeddings}};
    if (type == "llama") config["attention_bias"] = false, config["mlp_bias"] = false;
    if (qwen2 || qwen3 || qwen2_moe || qwen3_moe) config["use_sliding_window"] = false, config["sliding_window"] = nullptr;
    if (mixtral) config["sliding_window"] = nullptr;
    if (!moe) return config;
    const MoeLayout m = gguf_moe_layout(gguf);
    config["num_experts_per_tok"] = m.spec.top_k;
    if (mixtral) {  // its feed_forward_length is the expert's; the top-k always renormalized
      config["intermediate_size"] = m.expert_intermediate;
      config["num_local_experts"] = m.experts;
      return config;
    }
    if (c_.intermediate <= 0) config.erase("intermediate_size");  // (no dense MLP: a size nothing reads)
    config["moe_intermediate_size"] = m.expert_intermediate;
    config["num_experts"] = m.experts;
    config["norm_topk_prob"] = m.spec.normalize;
    config["decoder_sparse_step"] = 1;
    config["mlp_only_layers"] = nlohmann::ordered_json::array();
    if (qwen3_moe) {
      detail::require(m.shared_intermediate == 0, gguf.path() + ": a shared expert has no config.json key in a qwen3_moe checkpoint");
      config["attention_bias"] = biased;
      return config;
    }
    detail::require(m.shared_intermediate > 0 && m.shared_gate,  // transformers' Qwen2-MoE always has a gated shared expert
                    gguf.path() + ": a qwen2moe model without a gated shared expert (ffn_*_shexp, ffn_gate_inp_shexp) has no "
                                  "Hugging Face configuration");
    config["shared_expert_intermediate_size"] = m.shared_intermediate;
    config["qkv_bias"] = biased;
    return config;
  }

  /// compressed-tensors' quantization_config for an MXFP4 / MXFP8 / NVFP4 / FP8_STATIC checkpoint, as
  /// auto-round 0.16.1 writes it with compressed-tensors 0.20 (export_to_llmcompressor): one
  /// config group for every Linear, the LM head and the layers kept in float16 ignored.
  nlohmann::ordered_json compressed_tensors_config() const {
    detail::require(spec_.data_type != DataType::Int,
                    "llm_compressor: only MXFP4, MXFP8, NVFP4 and FP8_STATIC are written in compressed-tensors' format here");
    detail::require(!spec_.act_rceil, "llm_compressor: compressed-tensors has no rounded-up (rceil) MX activation scales: MXFP4_RCEIL / MXFP8_RCEIL are written as auto_round");
    nlohmann::ordered_json ignore = nlohmann::ordered_json::array({"lm_head"});
    for (const std::string& name : not_converted_) ignore.push_back(loader_name(name));
    const auto config = [&](const char* format, const nlohmann::ordered_json& weights, const nlohmann::ordered_json& inputs) {
      return nlohmann::ordered_json{
          {"config_groups", {{"group_0", {{"format", nullptr}, {"input_activations", inputs}, {"output_activations", nullptr},
                                          {"targets", {"Linear"}}, {"weights", weights}}}}},
          {"format", format}, {"global_compression_ratio", nullptr}, {"ignore", ignore}, {"kv_cache_scheme", nullptr},
          {"moe_sparsity_config", nullptr}, {"provider", "auto-round"}, {"quant_method", "compressed-tensors"},
          {"quantization_status", "compressed"}};
    };
    if (spec_.data_type == DataType::Fp && spec_.group_rows > 1) {  // FP8_BLOCK: tiles, inputs per token and 128 features
      const nlohmann::ordered_json weights = {{"block_structure", {spec_.group_rows, spec_.group_size}}, {"dynamic", false},
                                              {"group_size", nullptr}, {"num_bits", 8}, {"strategy", "block"},
                                              {"symmetric", true}, {"type", "float"}};
      nlohmann::ordered_json inputs = nullptr;
      if (spec_.act_bits <= 8) inputs = {{"dynamic", true}, {"group_size", spec_.group_size}, {"num_bits", 8}, {"strategy", "group"},
                                         {"symmetric", true}, {"type", "float"}};
      return config("float-quantized", weights, inputs);
    }
    if (spec_.data_type == DataType::Fp) {  // FP8_STATIC: per-channel weights, one static input scale
      const nlohmann::ordered_json weights = {{"dynamic", false}, {"group_size", nullptr}, {"num_bits", 8},
                                              {"strategy", "channel"}, {"symmetric", true}, {"type", "float"}};
      nlohmann::ordered_json inputs = nullptr;
      if (spec_.act_bits <= 8) inputs = {{"dynamic", false}, {"group_size", nullptr}, {"num_bits", 8}, {"strategy", "tensor"},
                                         {"symmetric", true}, {"type", "float"}};
      return config("float-quantized", weights, inputs);
    }
    const bool nv = spec_.data_type == DataType::NvFp;
    const nlohmann::ordered_json weights = {{"dynamic", false}, {"group_size", spec_.group_size}, {"num_bits", spec_.bits},
                                            {"scale_dtype", nv ? "torch.float8_e4m3fn" : "torch.uint8"},
                                            {"strategy", nv ? "tensor_group" : "group"}, {"symmetric", true}, {"type", "float"}};
    nlohmann::ordered_json inputs = nullptr;
    if (spec_.act_bits <= 8) {  // MX: dynamic per group of 32; NVFP4: per 16 under the stored input_global_scale
      inputs = weights;
      inputs["dynamic"] = nv ? nlohmann::ordered_json("local") : nlohmann::ordered_json(true);
      if (nv) inputs["observer"] = "static_minmax";
      inputs["num_bits"] = spec_.act_bits;
      // keys in compressed-tensors' (sorted) order
      nlohmann::ordered_json sorted;
      for (const char* key : {"dynamic", "group_size", "num_bits", "observer", "scale_dtype", "strategy", "symmetric", "type"})
        if (inputs.contains(key)) sorted[key] = inputs[key];
      inputs = sorted;
    }
    return config(nv ? "nvfp4-pack-quantized" : spec_.bits == 4 ? "mxfp4-pack-quantized" : "mxfp8-quantized", weights, inputs);
  }

 private:
  HfFormat format_;
  LlamaConfig c_;
  const ModelQuantOptions& options_;
  QuantSpec spec_;
  ExportSource source_;
  Dtype model_dtype_ = Dtype::F16;  // the model's dtype in the source's config.json (add_float)
  bool gguf_rope_;
  nlohmann::ordered_json extra_ = nlohmann::ordered_json::object(), dynamic_ = nlohmann::ordered_json::object();
  std::vector<std::string> not_converted_;
  std::size_t unfitting_ = 0;
};

/// Write `q` into the existing directory `dir` in `format`, every tensor in one model.safetensors.
/// Returns the names of the linear layers written in float16 (left in full precision, or not
/// fitting the format).
inline std::vector<std::string> export_hf_checkpoint(const QuantizedLlama<>& q, HfFormat format, const std::filesystem::path& dir,
                                                     const ExportSource& source) {
  const LlamaModel& m = q.model;
  HfTensorWriter writer(format, m.config, q.options, source);
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  writer.add_globals(w, m.embedding, m.final_norm, m.output);
  if (m.per_layer) writer.add_per_layer_embedding(w, *m.per_layer);
  for (Index b = 0; b < m.config.layers; ++b) writer.add_block(w, b, m.blocks[static_cast<std::size_t>(b)], q.layers.at(static_cast<std::size_t>(b)));
  w.write(dir / "model.safetensors");
  writer.write_metadata(dir);
  return writer.not_converted();
}

/// A checkpoint written while the model is being quantized (quantize_model_streaming's sink):
/// blocks are packed as they are tuned and gathered into shards of about `max_shard_bytes`
/// (a block never spans two), each written as soon as it is full; the embedding, final norm and
/// LM head close the last shard. finish() names the shards model-0000k-of-0000n.safetensors
/// (as transformers does, with n known only then: until finish they are model-0000k.partial),
/// writes model.safetensors.index.json (the weight map transformers reads) and the metadata
/// files; a checkpoint that fits one shard is model.safetensors without an index. Host memory:
/// the tensors of a shard wait on disk (SpillFile) until it is written, so a block's packed
/// tensors at most. A run stopped early leaves no index, so the directory does not load as a
/// checkpoint.
class HfShardWriter {
 public:
  static constexpr std::uint64_t default_max_shard_bytes = 1'000'000'000;

  HfShardWriter(HfFormat format, std::filesystem::path dir, const LlamaConfig& config, const ModelQuantOptions& options,
                const ExportSource& source, std::uint64_t max_shard_bytes = default_max_shard_bytes)
      : writer_(format, config, options, source), dir_(std::move(dir)), layers_(config.layers), max_bytes_(max_shard_bytes),
        pending_(spill_name(0)) {}

  template <class Results>
  void add_block(Index b, const LlamaBlock& block, const Results& results) {
    detail::require(b == blocks_, dir_.string() + ": block " + std::to_string(b) + " given where block " + std::to_string(blocks_) +
                                      " is next");
    writer_.add_block(pending_, b, block, results);
    ++blocks_;
    if (pending_bytes() >= max_bytes_) flush();
  }

  /// The embedding, final norm and LM head, the shards' final names, the index and the metadata files.
  void finish(const RowMatrix& embedding, const Eigen::VectorXf& final_norm, const RowMatrix& output) {
    finish_with([&](SafetensorsWriter& w) { writer_.add_globals(w, embedding, final_norm, output); });
  }
  /// As above, reading the embedding from `source` a slice at a time.
  template <ModelSource S>
  void finish(const S& source) {
    finish_with([&](SafetensorsWriter& w) { writer_.add_globals(w, source); });
  }

  const std::vector<std::string>& not_converted() const { return writer_.not_converted(); }
  std::size_t unfitting() const { return writer_.unfitting(); }

  /// Shard k's file name (0-based) in a checkpoint of n shards.
  static std::string shard_name(std::size_t k, std::size_t n) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    return name;
  }

 private:
  std::uint64_t pending_bytes() const {
    std::uint64_t n = 0;
    for (const auto& [name, bytes] : pending_.sizes()) n += bytes;
    return n;
  }
  std::filesystem::path partial_name(std::size_t k) const {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu.partial", k + 1);
    return dir_ / name;
  }
  // where a shard's tensors wait until it is complete (unlinked at once: see SpillFile)
  std::filesystem::path spill_name(std::size_t k) const {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu.spill", k + 1);
    return dir_ / name;
  }
  void flush() {
    for (const auto& [name, bytes] : pending_.sizes()) {
      tensor_shard_.emplace_back(name, shards_);
      total_size_ += bytes;
    }
    pending_.set_metadata("format", "pt");
    pending_.write(partial_name(shards_));
    ++shards_;
    pending_ = SafetensorsWriter(spill_name(shards_));
  }

  template <class AddGlobals>
  void finish_with(AddGlobals&& add_globals) {
    detail::require(blocks_ == layers_, dir_.string() + ": " + std::to_string(blocks_) + " of " + std::to_string(layers_) + " blocks written");
    add_globals(pending_);
    flush();
    if (shards_ == 1) {  // it all fit in one: model.safetensors, no index, as transformers writes it
      std::filesystem::rename(partial_name(0), dir_ / "model.safetensors");
      writer_.write_metadata(dir_);
      return;
    }
    std::map<std::string, std::string> weight_map;  // sorted by tensor name, as transformers writes it
    for (const auto& [name, k] : tensor_shard_) weight_map[name] = shard_name(k, shards_);
    for (std::size_t k = 0; k < shards_; ++k) std::filesystem::rename(partial_name(k), dir_ / shard_name(k, shards_));
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total_size_}}}, {"weight_map", weight_map}};
    detail::write_json(dir_ / "model.safetensors.index.json", index);
    writer_.write_metadata(dir_);
  }

  HfTensorWriter writer_;
  std::filesystem::path dir_;
  Index layers_, blocks_ = 0;
  std::uint64_t max_bytes_;
  SafetensorsWriter pending_;
  std::vector<std::pair<std::string, std::size_t>> tensor_shard_;
  std::uint64_t total_size_ = 0;
  std::size_t shards_ = 0;
};

}  // namespace autoround
