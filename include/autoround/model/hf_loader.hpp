#pragma once
// Loading a LLaMA-family model from a Hugging Face directory: config.json plus safetensors
// (model.safetensors or shards through model.safetensors.index.json), every weight to float32.
// Linear layers may be plain (.weight in F32/F16/BF16) or quantized checkpoints in the layouts we
// export (auto_round, auto_gptq without act-order, auto_awq), which are unpacked and dequantized:
// this is how a written checkpoint is read back and scored.
// Supported: model_type llama / mistral (no biases), qwen2 (q/k/v biases), qwen3 (q/k norms);
// qwen3_moe, qwen2_moe (its shared expert) and mixtral (LlamaBlock::moe, read by model/hf_moe.hpp;
// tuned on the CPU, tune/block_tuning_run.hpp);
// gemma3_text and gemma2 (sandwich norms, GeGLU, sliding-window layers, soft-capping: the Gemma
// settings of LlamaConfig; their (1 + w) norm weights are held as 1 + w); gemma4_text (its
// full layers' own head size, keys as values, v_norm, proportional RoPE, layer_scalar; the
// 26B-A4B's experts beside every dense MLP: MoeFeedForward::beside_mlp);
// deepseek_v3 (its latent attention: LlamaBlock::mla, model/latent_attention.hpp; its MoE as GLM's);
// RoPE scaling linear and llama3; sliding-window attention only where the family alternates it
// (Gemma), not Mistral/Qwen's use_sliding_window.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <optional>
#include <regex>
#include <span>
#include <string>

#include "../core/error.hpp"
#include "../format/safetensors.hpp"
#include "../pack/awq.hpp"
#include "hf_moe.hpp"
#include "../pack/gptq.hpp"
#include "gguf_source.hpp"
#include "linear_slots.hpp"
#include "llama_model.hpp"
#include "model_source.hpp"

namespace autoround {

namespace detail {

template <class T>
std::vector<T> copy_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name, Dtype dtype,
                           std::vector<std::int64_t> shape) {
  const SafetensorsTensor& t = ckpt.tensor(name);
  if (t.dtype != dtype) throw Error("tensor '" + name + "' is " + dtype_name(t.dtype) + ", expected " + dtype_name(dtype));
  if (t.shape != shape) {
    std::string want, got;
    for (auto d : shape) want += std::to_string(d) + " ";
    for (auto d : t.shape) got += std::to_string(d) + " ";
    throw Error("tensor '" + name + "' has shape [ " + got + "], expected [ " + want + "]");
  }
  std::vector<T> v(t.data.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}


/// The quantization of one layer as a checkpoint's quantization_config describes it.
struct CheckpointLayerScheme {
  std::string method;  ///< "auto-round", "gptq" or "awq"
  bool minus_one = false;
  int bits = 4, group_size = 128;
  bool sym = false;
};

inline CheckpointLayerScheme scheme_of(const nlohmann::json& qc, const std::string& layer) {
  CheckpointLayerScheme s;
  s.method = qc.value("quant_method", "");
  s.bits = qc.value("bits", 4);
  s.group_size = qc.value("group_size", 128);
  s.sym = qc.value("sym", false);
  if (s.method == "auto-round") {
    s.minus_one = qc.value("packing_format", "auto_round").find("gptq") != std::string::npos;
    if (qc.contains("extra_config") && qc["extra_config"].contains(layer)) {
      const auto& e = qc["extra_config"][layer];
      s.bits = e.value("bits", s.bits);
      s.group_size = e.value("group_size", s.group_size);
      s.sym = e.value("sym", s.sym);
    }
  } else if (s.method == "gptq") {
    s.minus_one = true;
    if (qc.contains("dynamic"))
      for (const auto& [key, value] : qc["dynamic"].items())
        if (key.rfind("+:", 0) == 0 && std::regex_search(layer, std::regex(key.substr(2)))) {
          s.bits = value.value("bits", s.bits);
          s.group_size = value.value("group_size", s.group_size);
          s.sym = value.value("sym", s.sym);
        }
  } else if (s.method != "awq") {
    throw Error("quantization_config: quant_method '" + s.method + "' is not supported (auto-round, gptq, awq)");
  }
  return s;
}

/// A compressed-tensors quantization_config (llm_compressor checkpoints: quant_method
/// "compressed-tensors") of MXFP4 / MXFP8 / NVFP4 as the auto-round config of the same tensors
/// (both formats store them alike); any other config as it is.
inline nlohmann::json auto_round_view(const nlohmann::json& qc) {
  // GPT-OSS's released MXFP4 experts: read from their blocks by load_moe (hf_moe.hpp); nothing else is quantized
  if (qc.value("quant_method", "") == "mxfp4") return nlohmann::json::object();
  if (qc.value("quant_method", "") == "fp8") {  // transformers' FineGrainedFP8: E4M3 weights in tiles, dynamic inputs
    const auto tile = qc.value("weight_block_size", nlohmann::json());
    if (tile != nlohmann::json::array({128, 128}))
      throw Error("quantization_config: quant_method fp8 with weight_block_size " + tile.dump() + " (128 x 128 tiles are supported)");
    nlohmann::json r = {{"quant_method", "auto-round"}, {"packing_format", "auto_round:fp8"}, {"sym", true}, {"data_type", "fp"},
                        {"bits", 8}, {"group_size", tile}};
    if (qc.value("activation_scheme", "dynamic") == "dynamic") r.update({{"act_bits", 8}, {"act_data_type", "fp"}, {"act_dynamic", true}});
    return r;
  }
  if (qc.value("quant_method", "") != "compressed-tensors") return qc;
  const std::string format = qc.value("format", "");
  nlohmann::json r = {{"quant_method", "auto-round"}, {"packing_format", "auto_round:llm_compressor"}, {"sym", true}};
  if (format == "mxfp4-pack-quantized") r.update({{"data_type", "mx_fp"}, {"bits", 4}, {"group_size", 32}});
  else if (format == "mxfp8-quantized") r.update({{"data_type", "mx_fp"}, {"bits", 8}, {"group_size", 32}});
  else if (format == "nvfp4-pack-quantized") r.update({{"data_type", "nv_fp"}, {"bits", 4}, {"group_size", 16}});
  else if (format == "float-quantized") r.update({{"data_type", "fp"}, {"bits", 8}, {"group_size", -1}});
  else
    throw Error("quantization_config: compressed-tensors format '" + format +
                "' is not supported (mxfp4-pack-quantized, mxfp8-quantized, nvfp4-pack-quantized, float-quantized)");
  const auto groups = qc.value("config_groups", nlohmann::json::object());
  if (groups.size() != 1) throw Error("quantization_config: compressed-tensors config with " + std::to_string(groups.size()) +
                                      " config_groups (one is supported)");
  const nlohmann::json& group = groups.begin().value();
  bool block = false;
  if (format == "float-quantized") {
    const auto& w = group.value("weights", nlohmann::json::object());
    block = w.value("strategy", "") == "block";
    if (block && w.value("block_structure", nlohmann::json()) != nlohmann::json::array({128, 128}))
      throw Error("quantization_config: block weights of block_structure " + w.value("block_structure", nlohmann::json()).dump() +
                  " (128 x 128 tiles are supported)");
    if ((!block && w.value("strategy", "") != "channel") || w.value("num_bits", 0) != 8 || w.value("type", "") != "float")
      throw Error("quantization_config: float-quantized weights other than FP8 per channel or in 128 x 128 blocks are not supported (strategy '" +
                  w.value("strategy", "") + "')");
    if (block) r["group_size"] = {128, 128};
  }
  const auto& inputs = group.value("input_activations", nlohmann::json());
  if (inputs.is_object()) {
    if (format == "float-quantized" && !block && (inputs.value("strategy", "") != "tensor" || inputs.value("dynamic", nlohmann::json(true)) != false))
      throw Error("quantization_config: FP8 input activations other than static per tensor are not supported");
    if (block && (inputs.value("strategy", "") != "group" || inputs.value("group_size", 0) != 128 || inputs.value("dynamic", nlohmann::json(false)) != true))
      throw Error("quantization_config: FP8_BLOCK's input activations other than dynamic in groups of 128 are not supported");
    r["act_bits"] = inputs.value("num_bits", 16);
    r["act_data_type"] = format == "nvfp4-pack-quantized" ? "nv_fp4_with_static_gs" : format == "float-quantized" ? "fp" : "mx_fp";
  }
  return r;
}

/// A layer's floating-point data type from quantization_config (auto-round's mx_fp / nv_fp), if any.
inline std::optional<QuantSpec> float_scheme_of(const nlohmann::json& qc, const std::string& layer) {
  if (qc.value("quant_method", "") != "auto-round") return std::nullopt;
  std::string type = qc.value("data_type", "int");
  int bits = qc.value("bits", 4);
  if (qc.contains("extra_config") && qc["extra_config"].contains(layer)) {
    type = qc["extra_config"][layer].value("data_type", type);
    bits = qc["extra_config"][layer].value("bits", bits);
  }
  const auto with_acts = [&](QuantSpec s) {  // W4A4 / W8A8 as the preset, or weight-only
    s.act_bits = qc.value("act_bits", 16) <= 8 ? s.act_bits : 16;
    s.act_rceil = s.act_bits <= 8 && s.data_type == DataType::MxFp && qc.value("act_data_type", "") == "mx_fp_rceil";
    return s;
  };
  if (type == "mx_fp") return with_acts(float_spec(bits == 8 ? FloatFormat::MxFp8 : FloatFormat::MxFp4));
  if (type == "nv_fp") return with_acts(float_spec(FloatFormat::NvFp4));
  if (type == "fp" || type == "fp8_e4m3") {
    const nlohmann::json group = qc.value("group_size", nlohmann::json(-1));
    if (bits == 8 && group == nlohmann::json::array({128, 128})) return with_acts(float_spec(FloatFormat::Fp8Block));
    if (group != -1 || bits != 8)
      throw Error("quantization_config: data_type fp of " + layer + ": only FP8 per channel (bits 8, group_size -1) or in 128 x 128 "
                  "tiles (group_size [128, 128]) is supported, not group_size " + group.dump());
    return with_acts(float_spec(FloatFormat::Fp8));
  }
  if (type != "int") throw Error("quantization_config: data_type '" + type + "' of " + layer + " is not supported (int, mx_fp, nv_fp, fp)");
  return std::nullopt;
}

/// An MXFP4 / MXFP8 / NVFP4 layer in compressed-tensors' tensors (pack/float_tensors.hpp), dequantized.
/// `bf16_dequant` (an auto-round FP8_STATIC checkpoint): each code × its row scale rounded to
/// bfloat16, as auto-round 0.16.1's runtime Linear (WeightFP8ActFP8StaticQuantLinear) computes it
/// whatever the model's dtype (its default dtype bfloat16; from_original does not pass the model's).
inline RowMatrix load_float_linear(const SafetensorsCheckpoint& ckpt, const QuantSpec& spec, const std::string& name, Index out, Index in,
                                   bool bf16_dequant = false) {
  DynamicFloatQuantizer q(spec);
  if (q.format() == FloatFormat::Fp8Block) {  // E4M3 codes, a scale per 128 x 128 tile: weight_scale_inv (BF16), or
                                              // compressed-tensors' weight_scale (F32 as auto-round writes it, or BF16)
    QuantizedWeight<DynamicFloatQuantizer> w{q, group_layout_for(q, out, in), {}, {}, {}, {}, {}, {}, {}};
    w.codes = copy_tensor<std::uint8_t>(ckpt, name + ".weight", Dtype::F8_E4M3, {out, in});
    const std::vector<std::int64_t> tiles{w.layout.row_bands(), w.layout.groups_per_row()};
    const std::string scale = ckpt.contains(name + ".weight_scale_inv") ? name + ".weight_scale_inv" : name + ".weight_scale";
    if (ckpt.tensor(scale).dtype == Dtype::F32) {
      w.scales = copy_tensor<float>(ckpt, scale, Dtype::F32, tiles);
    } else {
      for (std::uint16_t b : copy_tensor<std::uint16_t>(ckpt, scale, Dtype::BF16, tiles)) w.scales.push_back(bf16_bits_to_float(b));
    }
    w.zeros.assign(w.scales.size(), 0);
    return w.dequantize();
  }
  if (spec.data_type == DataType::Fp) {  // FP8 per channel: E4M3 codes, a bfloat16 scale per row ([out] or [out, 1])
    const auto codes = copy_tensor<std::uint8_t>(ckpt, name + ".weight", Dtype::F8_E4M3, {out, in});
    const SafetensorsTensor& st = ckpt.tensor(name + ".weight_scale");
    const bool column = st.shape == std::vector<std::int64_t>{out, 1};
    const auto scales = copy_tensor<std::uint16_t>(ckpt, name + ".weight_scale", Dtype::BF16, column ? std::vector<std::int64_t>{out, 1}
                                                                                                     : std::vector<std::int64_t>{out});
    RowMatrix w(out, in);
    for (Index r = 0; r < out; ++r) {
      const float sc = bf16_bits_to_float(scales[static_cast<std::size_t>(r)]);
      for (Index c = 0; c < in; ++c) {
        const float v = minifloat::e4m3_value(codes[static_cast<std::size_t>(r * in + c)]) * sc;
        w(r, c) = bf16_dequant ? bf16_bits_to_float(float_to_bf16_bits(v)) : v;
      }
    }
    return w;
  }
  const Index group = spec.group_size;
  if (in % group != 0) throw Error(name + ": in_features = " + std::to_string(in) + " is not a multiple of " + std::to_string(group));
  const bool nv = spec.data_type == DataType::NvFp;
  if (nv) q = q.with_global_scale(copy_tensor<float>(ckpt, name + ".weight_global_scale", Dtype::F32, {1})[0]);
  QuantizedWeight<DynamicFloatQuantizer> w{q, GroupLayout(out, in, static_cast<int>(group)), {}, {}, {}, {}, {}, {}, {}};
  if (spec.bits == 4) {
    const auto packed = copy_tensor<std::uint8_t>(ckpt, name + ".weight_packed", Dtype::U8, {out, in / 2});
    w.codes.resize(static_cast<std::size_t>(out * in));
    for (std::size_t k = 0; k < packed.size(); ++k) {
      w.codes[2 * k] = packed[k] & 15u;
      w.codes[2 * k + 1] = packed[k] >> 4;
    }
  } else {
    w.codes = copy_tensor<std::uint8_t>(ckpt, name + ".weight", Dtype::F8_E4M3, {out, in});
  }
  const auto scales = copy_tensor<std::uint8_t>(ckpt, name + ".weight_scale", nv ? Dtype::F8_E4M3 : Dtype::U8, {out, in / group});
  for (std::uint8_t b : scales) {
    if (!nv && b == 255) throw Error("tensor '" + name + ".weight_scale': E8M0 byte 255 is NaN");
    w.scales.push_back(nv ? minifloat::e4m3_value(b) : minifloat::e8m0_value(b));
  }
  w.zeros.assign(w.scales.size(), 0);
  return w.dequantize();
}

inline RowMatrix load_quantized_linear(const SafetensorsCheckpoint& ckpt, const nlohmann::json& qc, const std::string& name,
                                       Index out, Index in) {
  if (const auto fp = float_scheme_of(qc, name)) {
    const bool fp8_static = fp->data_type == DataType::Fp && fp->group_rows == 1 && fp->act_bits <= 8;
    return load_float_linear(ckpt, *fp, name, out, in, fp8_static && qc.value("quant_method", "") == "auto-round");
  }
  const CheckpointLayerScheme s = scheme_of(qc, name);
  const Index group = s.group_size == -1 ? in : std::min<Index>(s.group_size, in);
  const Index groups = (in + group - 1) / group;
  std::vector<std::uint16_t> scales;
  const auto f16 = [&](std::vector<std::int64_t> shape) {
    return copy_tensor<std::uint16_t>(ckpt, name + ".scales", Dtype::F16, std::move(shape));
  };
  if (s.method == "awq") {
    AwqTensors t{in, out, group, copy_tensor<std::int32_t>(ckpt, name + ".qweight", Dtype::I32, {in, out / 8}),
                 copy_tensor<std::int32_t>(ckpt, name + ".qzeros", Dtype::I32, {in / group, out / 8}), f16({in / group, out})};
    return unpack_awq(t, s.sym ? Symmetric : Asymmetric, name).dequantize();
  }
  GptqTensors t;
  t.bits = s.bits;
  t.in_features = in;
  t.out_features = out;
  t.group_size = group;
  t.zero_convention = s.minus_one ? GptqZeros::MinusOne : GptqZeros::Stored;
  t.qweight = copy_tensor<std::int32_t>(ckpt, name + ".qweight", Dtype::I32, {in * s.bits / 32, out});
  t.qzeros = copy_tensor<std::int32_t>(ckpt, name + ".qzeros", Dtype::I32, {groups, out * s.bits / 32});
  t.scales = f16({groups, out});
  if (ckpt.contains(name + ".g_idx")) {
    const auto g_idx = copy_tensor<std::int32_t>(ckpt, name + ".g_idx", Dtype::I32, {in});
    for (Index i = 0; i < in; ++i)
      if (g_idx[static_cast<std::size_t>(i)] != i / group)
        throw Error("tensor '" + name + ".g_idx': act-order (desc_act) checkpoints are not supported");
  }
  return unpack_gptq(t, s.sym ? Symmetric : Asymmetric, name).dequantize();
}

}  // namespace detail

/// A Hugging Face model directory (config.json + safetensors), read block by block from the
/// memory-mapped shards.
class HfModelSource {
 public:
  explicit HfModelSource(const std::filesystem::path& dir) : dir_(dir) {
    read_config(dir);
    ckpt_.emplace(dir);
    // the language model's place: a causal LM's, or one of a vision-language checkpoint's namings
    for (const char* prefix : {"model.", "language_model.model.", "model.language_model."})
      if (ckpt_->contains(std::string(prefix) + "embed_tokens.weight")) {
        config_.hf_prefix = prefix;
        break;
      }
    for (const char* head : {"lm_head.weight", "language_model.lm_head.weight"})
      if (ckpt_->contains(head)) config_.hf_lm_head = head;
    if (tie_from_tensors_) config_.tied_embeddings = !ckpt_->contains(config_.hf_lm_head);
    const std::string embedding = config_.hf_prefix + "embed_tokens.weight";
    const SafetensorsTensor& e = ckpt_->tensor(embedding);
    if (e.shape.size() != 2 || e.shape[1] != config_.hidden)
      throw Error("tensor '" + embedding + "' does not have hidden_size columns");
    config_.vocab = static_cast<Index>(e.shape[0]);
    if (gemma()) {  // transformers scales by √hidden rounded to the embedding's type (Gemma3TextScaledWordEmbedding)
      const float scale = std::sqrt(static_cast<float>(config_.hidden));
      const ggml::Type as = e.dtype == Dtype::BF16 ? ggml::Type::BF16 : e.dtype == Dtype::F16 ? ggml::Type::F16 : ggml::Type::F32;
      const std::vector<std::byte> rounded = ggml::quantize(as, std::span<const float>(&scale, 1));
      ggml::dequantize(as, rounded, std::span<float>(&config_.embedding_scale, 1));
    }
  }

  const LlamaConfig& config() const { return config_; }
  const SafetensorsCheckpoint& checkpoint() const { return *ckpt_; }
  const nlohmann::json& quantization_config() const { return qc_; }
  std::string name() const { return dir_.string(); }

  LlamaBlock block(Index b) const {
    detail::require(b >= 0 && b < config_.layers, name() + ": no block " + std::to_string(b));
    const LlamaConfig c = layer_config(config_, b);  // (Gemma 4's full layers: their own head size; E2B's double-wide MLPs)
    LlamaBlock block;
    const std::string prefix = c.hf_prefix + "layers." + std::to_string(b) + ".";
    block.values_from_keys = c.values_from_keys(config_.is_sliding(b));
    // Gemma 4 E2B / E4B's kv-shared layers: no k_proj / v_proj / k_norm (released checkpoints may
    // still hold them; transformers ignores them, and so do we)
    block.kv_shared = config_.kv_shared(b);
    const bool sparse = moe_ && moe_->sparse[static_cast<std::size_t>(b)];
    const bool gemma4 = c.model_type == "gemma4_text";  // (its 26B-A4B: the experts beside the dense MLP)
    const auto linear = [&](const std::string& tensor, Index rows, Index cols) {
      // MXFP8 and FP8 layers keep the name "weight" for their E4M3 codes (with a weight_scale, or
      // FP8_BLOCK's weight_scale_inv, beside them)
      const bool plain = ckpt_->contains(tensor + ".weight") && !ckpt_->contains(tensor + ".weight_scale") &&
                         !ckpt_->contains(tensor + ".weight_scale_inv");
      if (!plain && qc_.value("quant_method", "").empty())  // an unquantized checkpoint without the layer
        throw Error(name() + ": tensor '" + tensor + ".weight' is missing");
      return plain ? load(tensor + ".weight", rows, cols) : detail::load_quantized_linear(*ckpt_, qc_, tensor, rows, cols);
    };
    if (c.model_type == "phi3") {  // fused layers: qkv_proj = [q; k; v], gate_up_proj = [gate; up] (rows)
      const Index q = linear_shape(c, Linear::Query).first, kv = linear_shape(c, Linear::Key).first;
      const RowMatrix qkv = linear(prefix + "self_attn.qkv_proj", q + 2 * kv, c.hidden);
      block[Linear::Query] = qkv.topRows(q);
      block[Linear::Key] = qkv.middleRows(q, kv);
      block[Linear::Value] = qkv.bottomRows(kv);
      const RowMatrix gate_up = linear(prefix + "mlp.gate_up_proj", 2 * c.intermediate, c.hidden);
      block[Linear::Gate] = gate_up.topRows(c.intermediate);
      block[Linear::Up] = gate_up.bottomRows(c.intermediate);
    }
    for (Linear l : all_linears) {
      if (sparse && !gemma4 && (l == Linear::Gate || l == Linear::Up || l == Linear::Down)) continue;  // the experts instead
      if (c.model_type == "phi3" && l != Linear::Output && l != Linear::Down) continue;  // read fused above
      if (l == Linear::Value && block.values_from_keys) continue;  // Gemma 4's full layers: no v_proj
      if ((l == Linear::Key || l == Linear::Value) && block.kv_shared) continue;
      const auto [rows, cols] = linear_shape(c, l);
      block[l] = linear(prefix + hf_name(l, c.model_type), rows, cols);
    }
    if (c.latent_attention()) {  // DeepSeek-V3: q_a_proj and the two latent norms beside q_b / kv_a / kv_b / o
      LatentAttention a;
      a.query_a = linear(prefix + "self_attn.q_a_proj", c.q_lora_rank, c.hidden);
      a.query_a_norm = norm(prefix + "self_attn.q_a_layernorm.weight", c.q_lora_rank);
      a.kv_a_norm = norm(prefix + "self_attn.kv_a_layernorm.weight", c.kv_lora_rank);
      block.mla = std::move(a);
    }
    if (sparse)
      block.moe = MoeFeedForward{moe_->spec, load_moe(*ckpt_, *moe_, b, c.hidden, c.hf_prefix, [this](const std::string& layer, Index out, Index in) {
                                   return detail::load_quantized_linear(*ckpt_, qc_, layer, out, in);
                                 }), {}};
    const bool gpt_oss = c.model_type == "gpt_oss";
    if (c.model_type == "qwen2" || c.model_type == "qwen2_moe" || gpt_oss || glm_qkv_bias_)  // q/k/v projections carry biases
      for (std::size_t k = 0; k < 3; ++k) {
        const Linear l = all_linears[k];
        const RowMatrix bias = load(prefix + hf_name(l) + ".bias", 1, linear_shape(c, l).first);
        block.qkv_bias[k] = bias.row(0).transpose();
      }
    if (gpt_oss) {  // and o_proj's; a sink logit per head
      block.output_bias = load(prefix + hf_name(Linear::Output) + ".bias", 1, c.hidden).row(0).transpose();
      block.sinks = load(prefix + "self_attn.sinks", 1, c.heads).row(0).transpose();
    }
    if (c.model_type == "qwen3" || c.model_type == "qwen3_moe" || glm_qk_norm_) {  // per-head RMSNorm of q and k
      block.q_norm = load(prefix + "self_attn.q_norm.weight", 1, c.head_dim).row(0).transpose();
      block.k_norm = load(prefix + "self_attn.k_norm.weight", 1, c.head_dim).row(0).transpose();
    }
    if (c.model_type == "gemma3_text" || c.model_type == "gemma4_text") {  // per-head RMSNorm of q and k (Gemma 3: 1 + w)
      block.q_norm = norm(prefix + "self_attn.q_norm.weight", c.head_dim);
      if (!block.kv_shared) block.k_norm = norm(prefix + "self_attn.k_norm.weight", c.head_dim);
    }
    if (c.model_type == "gemma4_text") block.layer_scalar = load(prefix + "layer_scalar", 1, 1)(0, 0);
    if (c.per_layer_input > 0) {  // Gemma 4 E2B / E4B: the per-layer input's branch
      PerLayerBranch branch;
      branch.gate = linear(prefix + "per_layer_input_gate", c.per_layer_input, c.hidden);
      branch.projection = linear(prefix + "per_layer_projection", c.hidden, c.per_layer_input);
      branch.post_norm = norm(prefix + "post_per_layer_input_norm.weight", c.hidden);
      block.per_layer = std::move(branch);
    }
    block.attn_norm = norm(prefix + "input_layernorm.weight", c.hidden);
    if (gemma()) {  // sandwich norms: Gemma's post_attention_layernorm norms the attention's output
      block.post_attn_norm = norm(prefix + "post_attention_layernorm.weight", c.hidden);
      block.ffn_norm = norm(prefix + "pre_feedforward_layernorm.weight", c.hidden);
      block.post_ffn_norm = norm(prefix + "post_feedforward_layernorm.weight", c.hidden);
      if (sparse && gemma4) {  // the experts' norms (their input, each branch's output) and the router's input scale
        ExpertsBesideMlp beside;
        beside.input_norm = norm(prefix + "pre_feedforward_layernorm_2.weight", c.hidden);
        beside.mlp_norm = norm(prefix + "post_feedforward_layernorm_1.weight", c.hidden);
        beside.experts_norm = norm(prefix + "post_feedforward_layernorm_2.weight", c.hidden);
        beside.router_scale = load(prefix + "router.scale", 1, c.hidden).row(0).transpose();
        block.moe->beside_mlp = std::move(beside);
      }
    } else {
      block.ffn_norm = norm(prefix + "post_attention_layernorm.weight", c.hidden);
    }
    block.sliding = c.is_sliding(b);
    block.act_quant = activation_quant(prefix, block);
    return block;
  }

  /// A W4A4 / W8A8 checkpoint's activation quantization of a block's linear inputs (act_bits <= 8
  /// with mx_fp or nv_fp4_with_static_gs activations; NVFP4: each input's input_global_scale, and
  /// in a mixture of experts each expert's own).
  std::optional<ActivationQuant> activation_quant(const std::string& prefix, const LlamaBlock& block) const {
    if (qc_.value("quant_method", "") != "auto-round" || qc_.value("act_bits", 16) > 8) return std::nullopt;
    const std::string type = qc_.value("act_data_type", "");
    // a layer stored quantized has scales beside its codes; one stored in float reads a float input
    const auto stored_quantized = [&](const std::string& layer) {
      return ckpt_->contains(layer + ".weight_scale") || ckpt_->contains(layer + ".weight_scale_inv");
    };
    // the static input scales (NVFP4: input_global_scale F32; FP8_STATIC: input_scale BF16), one
    // per LinearInput, stored with each quantized layer that reads that input (the first one's
    // read); an input only float layers read stays float, as the reference leaves it
    const bool phi3 = config_.model_type == "phi3";
    const std::pair<LinearInput, std::vector<std::string>> inputs[] = {
        {LinearInput::Attention, phi3 ? std::vector<std::string>{"self_attn.qkv_proj"}
                                      : std::vector<std::string>{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}},
        {LinearInput::AttentionOutput, {"self_attn.o_proj"}},
        {LinearInput::Mlp, phi3 ? std::vector<std::string>{"mlp.gate_up_proj"} : std::vector<std::string>{"mlp.gate_proj", "mlp.up_proj"}},
        {LinearInput::MlpProduct, {"mlp.down_proj"}}};
    const bool sparse = block.moe && !block.moe->beside_mlp;  // no dense MLP: its inputs' scales are the experts'
    std::array<std::string, 4> reader;  // per LinearInput: its first quantized layer (empty: only float ones read it)
    for (const auto& [input, layers] : inputs)
      for (const std::string& l : layers)
        if (stored_quantized(prefix + l)) {
          reader[static_cast<std::size_t>(input)] = prefix + l;
          break;
        }
    // the scheme of the block's first quantized layer (the checkpoint's, if none is)
    const auto first = std::find_if(reader.begin(), reader.end(), [](const std::string& l) { return !l.empty(); });
    const auto spec = detail::float_scheme_of(qc_, first == reader.end() ? std::string() : *first);
    if (!spec || (type != "mx_fp" && type != "mx_fp_rceil" && type != "nv_fp4_with_static_gs" && type != "fp"))
      throw Error(name() + ": quantization_config: activations act_data_type '" + type + "' with act_bits " +
                  std::to_string(qc_.value("act_bits", 16)) + " are not supported (mx_fp, mx_fp_rceil, nv_fp4_with_static_gs, fp)");
    ActivationQuant a{DynamicFloatQuantizer(*spec), {}, {}, {}, {}, false};
    const bool fp8_static = spec->data_type == DataType::Fp && spec->group_rows == 1;  // (FP8_BLOCK's inputs are dynamic)
    a.bf16_product = fp8_static;  // (as its runtime Linear: load_float_linear's bf16_dequant)
    for (std::size_t i = 0; i < reader.size(); ++i) {
      if (sparse && (i == static_cast<std::size_t>(LinearInput::Mlp) || i == static_cast<std::size_t>(LinearInput::MlpProduct))) continue;
      if (reader[i].empty()) {
        a.float_input[i] = true;
        continue;
      }
      const std::string& layer = reader[i];
      if (fp8_static)
        a.input_scale[i] = bf16_bits_to_float(detail::copy_tensor<std::uint16_t>(*ckpt_, layer + ".input_scale", Dtype::BF16, {1})[0]);
      else if (spec->data_type == DataType::NvFp && ckpt_->contains(layer + ".input_global_scale"))
        a.global_scale[i] = detail::copy_tensor<float>(*ckpt_, layer + ".input_global_scale", Dtype::F32, {1})[0];
    }
    if (block.moe) {
      // per expert: whether its inputs stay float (its layers stored in float) and its own static
      // scales (gate's and up's: the one for the larger input); the block's, for an expert without
      // its own (a sparse block stores none): the largest input's
      const std::size_t routed = block.moe->weights.experts.size();
      a.experts.resize(routed + (block.moe->weights.shared ? 1 : 0));
      for (ExpertInputScales& e : a.experts) e.float_input = {true, true};
      const bool static_scales = fp8_static || spec->data_type == DataType::NvFp;
      const auto keep = [&](float& to, float v) { to = to == 0.0f ? v : fp8_static ? std::max(to, v) : std::min(to, v); };
      for (const LinearSlot& slot : linear_slots(block)) {
        if (!slot.of_expert()) continue;
        const std::string layer = prefix + hf_name(slot, config_.model_type);
        const std::size_t e = slot.routed() ? static_cast<std::size_t>(slot.expert) : routed, k = slot.role == Linear::Down ? 1 : 0;
        if (stored_quantized(layer)) a.experts[e].float_input[k] = false;
        const std::string scale = layer + (fp8_static ? ".input_scale" : ".input_global_scale");
        if (!static_scales || !ckpt_->contains(scale)) continue;
        const float v = fp8_static ? bf16_bits_to_float(detail::copy_tensor<std::uint16_t>(*ckpt_, scale, Dtype::BF16, {1})[0])
                                   : detail::copy_tensor<float>(*ckpt_, scale, Dtype::F32, {1})[0];
        const auto i = static_cast<std::size_t>(k == 0 ? LinearInput::Mlp : LinearInput::MlpProduct);
        keep(fp8_static ? a.experts[e].input_scale[k] : a.experts[e].global_scale[k], v);
        if (sparse) keep(fp8_static ? a.input_scale[i] : a.global_scale[i], v);
      }
    }
    return a;
  }

  /// The embedding rows of `tokens`, converting only those rows (F32 / F16 / BF16).
  RowMatrix embedding_rows(std::span<const std::int32_t> tokens) const { return rows_of(config_.hf_prefix + "embed_tokens.weight", tokens); }
  /// Rows of the (untied) LM head, the same way.
  RowMatrix output_rows(std::span<const std::int32_t> rows) const {
    detail::require(!config_.tied_embeddings, name() + ": the LM head is tied to the embedding");
    return rows_of(config_.hf_lm_head, rows);
  }
  RowMatrix embedding() const { return ckpt_->to_float(config_.hf_prefix + "embed_tokens.weight"); }
  /// Gemma 4 E2B / E4B's per-layer embedding: the table, the projection and its norm, whole (the
  /// table is [per_layer_vocab, layers · P]: 9.4 GB in float32 at E2B; per_layer_rows reads a slice).
  PerLayerEmbedding per_layer_embedding() const {
    detail::require(config_.per_layer_input > 0, name() + ": the model has no per-layer embeddings");
    PerLayerEmbedding e;
    const Index width = config_.layers * config_.per_layer_input;
    e.table = load(config_.hf_prefix + "embed_tokens_per_layer.weight", config_.per_layer_vocab, width);
    e.projection = per_layer_projection();
    e.norm = per_layer_norm();
    return e;
  }
  /// The projection and its norm alone (what per_layer_input needs beside the table's rows).
  RowMatrix per_layer_projection() const {
    return load(config_.hf_prefix + "per_layer_model_projection.weight", config_.layers * config_.per_layer_input, config_.hidden);
  }
  Eigen::VectorXf per_layer_norm() const { return norm(config_.hf_prefix + "per_layer_projection_norm.weight", config_.per_layer_input); }
  /// Layer `layer`'s slice of the per-layer table, the rows of `tokens` ([tokens, P]), converting only those.
  RowMatrix per_layer_rows(std::span<const std::int32_t> tokens, Index layer) const {
    detail::check_tokens(tokens, config_.per_layer_vocab, "the per-layer embedding table");
    const Index p = config_.per_layer_input;
    return table_rows(config_.hf_prefix + "embed_tokens_per_layer.weight", tokens, config_.per_layer_vocab, config_.layers * p,
                      layer * p, p, "[vocab_size_per_layer_input, layers · hidden_size_per_layer_input]");
  }
  Eigen::VectorXf final_norm() const { return norm(config_.hf_prefix + "norm.weight", config_.hidden); }
  RowMatrix output() const { return config_.tied_embeddings ? RowMatrix() : load(config_.hf_lm_head, config_.vocab, config_.hidden); }

 private:
  RowMatrix rows_of(const std::string& tensor, std::span<const std::int32_t> tokens) const {
    detail::check_tokens(tokens, config_.vocab);
    return table_rows(tensor, tokens, config_.vocab, config_.hidden, 0, config_.hidden, "[vocab, hidden]");
  }
  /// Columns [first, first + count) of the rows `tokens` (checked by the caller) of a float table
  /// [rows, cols]: read, not mapped (MappedFile::copy), since the rows lie at random over the table.
  RowMatrix table_rows(const std::string& tensor, std::span<const std::int32_t> tokens, Index rows, Index cols, Index first,
                       Index count, const char* shape) const {
    const SafetensorsTensor& t = ckpt_->tensor(tensor);
    if (t.dtype != Dtype::F32 && t.dtype != Dtype::F16 && t.dtype != Dtype::BF16)
      throw Error("tensor '" + tensor + "' is " + dtype_name(t.dtype) + ", not a float type");
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) throw Error("tensor '" + tensor + "' is not " + shape);
    const ggml::Type as = t.dtype == Dtype::F32 ? ggml::Type::F32 : t.dtype == Dtype::F16 ? ggml::Type::F16 : ggml::Type::BF16;
    const std::size_t element = dtype_size(t.dtype), row_bytes = element * static_cast<std::size_t>(cols);
    RowMatrix h(static_cast<Index>(tokens.size()), count);
    std::vector<std::byte> slice(element * static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      ckpt_->copy(tensor, t.data.subspan(static_cast<std::size_t>(tokens[i]) * row_bytes + element * static_cast<std::size_t>(first), slice.size()),
                  slice);
      ggml::dequantize(as, slice, std::span<float>(h.data() + static_cast<Index>(i) * count, static_cast<std::size_t>(count)));
    }
    return h;
  }
  RowMatrix load(const std::string& tensor, Index rows, Index cols) const {
    RowMatrix w = ckpt_->to_float(tensor);
    ckpt_->release(tensor);  // only the block being worked on stays in memory
    if (rows == 1 && w.size() == cols) w.resize(1, cols);
    if (w.rows() != rows || w.cols() != cols)
      throw Error("tensor '" + tensor + "' is " + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + ", expected " +
                  std::to_string(rows) + "x" + std::to_string(cols));
    return w;
  }
  /// An RMSNorm's weight as the factor it multiplies by (Gemma's 1 + w).
  Eigen::VectorXf norm(const std::string& tensor, Index size) const {
    Eigen::VectorXf v = load(tensor, 1, size).row(0).transpose();
    if (config_.norm_weight_plus_one) v.array() += 1.0f;
    return v;
  }
  bool gemma() const { return config_.model_type == "gemma3_text" || config_.model_type == "gemma2" || config_.model_type == "gemma4_text"; }

  /// DeepSeek-V3's latent attention dimensions; head_dim becomes the roped part (qk_rope_head_dim),
  /// as transformers sets it (the released config.json has no head_dim key).
  void read_latent_attention(const nlohmann::json& j) {
    LlamaConfig& c = config_;
    if (!j.contains("q_lora_rank") || j["q_lora_rank"].is_null())
      throw Error("q_lora_rank null (a q_proj without query compression, DeepSeek-V2-Lite's layout) is not supported for deepseek_v3");
    c.q_lora_rank = j.at("q_lora_rank").get<Index>();
    c.kv_lora_rank = j.at("kv_lora_rank").get<Index>();
    c.qk_nope_dim = j.at("qk_nope_head_dim").get<Index>();
    c.head_dim = j.at("qk_rope_head_dim").get<Index>();
    c.v_head_dim = j.at("v_head_dim").get<Index>();
    if (c.q_lora_rank <= 0 || c.kv_lora_rank <= 0 || c.qk_nope_dim <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 || c.v_head_dim <= 0)
      throw Error("inconsistent latent attention sizes (q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim even, v_head_dim)");
    c.latent_norm_eps = 1e-6f;  // DeepseekV3RMSNorm's default: transformers does not pass rms_norm_eps to q_a/kv_a_layernorm
  }

  void read_config(const std::filesystem::path& dir) {
    const auto config_path = dir / "config.json";
    std::ifstream in(config_path);
    if (!in) throw Error(config_path.string() + ": cannot open (is " + dir.string() + " a Hugging Face model directory?)");
    nlohmann::json root;
    try {
      root = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error(config_path.string() + ": not valid JSON: " + e.what());
    }
    // A vision-language checkpoint (the reference quantizes its language model's blocks and keeps
    // the vision tower and projector): the language model's config is text_config (Gemma 3,
    // Mistral 3, LLaVA, transformers 5's Qwen2.5-VL) or the top level (hub Qwen2.5-VL configs).
    const std::string outer = root.value("model_type", "");
    const bool vlm = outer == "gemma3" || outer == "gemma4" || outer == "qwen2_5_vl" || outer == "qwen2_vl" || outer == "mistral3" || outer == "llava";
    const bool nested = root.contains("text_config") && root["text_config"].is_object();
    if (vlm && !nested && outer != "qwen2_5_vl" && outer != "qwen2_vl")
      throw Error(config_path.string() + ": a " + outer + " vision-language config without text_config (its language model's settings)");
    const nlohmann::json& j = vlm && nested ? root["text_config"] : root;
    std::string type = vlm && &j != &root ? j.value("model_type", outer == "gemma3" ? "gemma3_text" : outer == "gemma4" ? "gemma4_text" : outer == "mistral3" ? "mistral" : "llama") : outer;
    const bool qwen_vl = type == "qwen2_5_vl" || type == "qwen2_vl" || type == "qwen2_5_vl_text" || type == "qwen2_vl_text";
    if (qwen_vl) type = "qwen2";  // Qwen2.5-VL's language model is Qwen2's (its mrope is Qwen2's RoPE on text-only positions)
    config_.vision_language = vlm;
    tie_from_tensors_ = vlm && !root.contains("tie_word_embeddings");
    const bool gpt_oss = type == "gpt_oss";
    const bool glm = type == "glm4_moe";  // GLM-4.5 / 4.6 / 4.7: DeepSeek-V3's routing and shared expert beside GQA attention
    const bool deepseek = type == "deepseek_v3";  // its MoE is GLM's; its attention latent (MLA)
    const bool moe = type == "qwen3_moe" || type == "qwen2_moe" || type == "mixtral" || gpt_oss || glm || deepseek;
    const bool gemma = type == "gemma3_text" || type == "gemma2" || type == "gemma4_text";
    if (type != "llama" && type != "mistral" && type != "qwen2" && type != "qwen3" && type != "phi3" && !moe && !gemma)
      throw Error(config_path.string() + ": model_type '" + type +
                  "' is not supported (llama, mistral, qwen2, qwen3, phi3, qwen3_moe, qwen2_moe, mixtral, gpt_oss, glm4_moe, deepseek_v3, gemma3_text, gemma2, gemma4_text; "
                  "the vision-language gemma3, gemma4, qwen2_5_vl, mistral3, llava)");
    if (j.value("use_sliding_window", false))
      throw Error(config_path.string() + ": sliding-window attention is not supported");
    if ((j.value("attention_bias", false) && !gpt_oss && !glm) || j.value("mlp_bias", false))  // GPT-OSS: q/k/v/o biases, GLM: q/k/v's, read below
      throw Error(config_path.string() + ": attention/MLP biases are not supported yet");
    glm_qkv_bias_ = glm && j.value("attention_bias", false);
    glm_qk_norm_ = glm && j.value("use_qk_norm", false);
    LlamaConfig& c = config_;
    c.model_type = type;
    try {
      c.hidden = j.at("hidden_size").get<Index>();
      c.intermediate = j.at("intermediate_size").get<Index>();
      c.heads = j.at("num_attention_heads").get<Index>();
      c.kv_heads = j.value("num_key_value_heads", c.heads);
      c.layers = j.at("num_hidden_layers").get<Index>();
      // Qwen2.5-VL ignores a head_dim key (hidden / heads always)
      c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() && !qwen_vl ? j["head_dim"].get<Index>() : c.hidden / std::max<Index>(c.heads, 1);
      c.rms_eps = j.value("rms_norm_eps", 1e-6f);
      // transformers 5 writes RoPE's settings (theta and scaling) as rope_parameters, 4.x as
      // rope_theta and rope_scaling at the top level
      c.rope_theta = j.contains("rope_theta") && !j["rope_theta"].is_null() ? j["rope_theta"].get<float>()
                     : j.contains("rope_parameters") && j["rope_parameters"].is_object()
                         ? j["rope_parameters"].value("rope_theta", 10000.0f)
                         : 10000.0f;
      // Gemma's configs tie by default; a vision-language model's tie is its top-level key (transformers
      // reads only that one), or where it has none, whether an LM head is stored
      c.tied_embeddings = vlm ? root.value("tie_word_embeddings", true) : j.value("tie_word_embeddings", gemma);
      if (moe) moe_ = moe_layout(j, c.layers), c.experts = moe_->experts;
      if (gemma) read_gemma(j);
      if (gpt_oss) read_layer_types(j, 2);  // its alternation: sliding, full, ...; window 128
      if (deepseek) read_latent_attention(j);
    } catch (const nlohmann::json::exception& e) {
      throw Error(config_path.string() + ": " + e.what());
    } catch (const Error& e) {
      throw Error(config_path.string() + ": " + e.what());
    }
    if (c.heads <= 0 || c.kv_heads <= 0 || c.heads % c.kv_heads != 0 || c.head_dim <= 0 || c.layers <= 0)
      throw Error(config_path.string() + ": inconsistent head counts or layer count");
    c.rope_style = deepseek && j.value("rope_interleave", true) ? RopeStyle::AdjacentPairs : RopeStyle::HalfSplit;
    if (gemma) {  // RoPE per layer type, read by read_gemma
      qc_ = quantization_config_of(root, config_path);
      return;
    }
    const char* scaling = j.contains("rope_scaling") && j["rope_scaling"].is_object() ? "rope_scaling"
                          : j.contains("rope_parameters") && j["rope_parameters"].is_object() ? "rope_parameters"
                                                                                                : nullptr;
    if (scaling) {
      const auto& r = j[scaling];
      const std::string kind = r.value("rope_type", r.value("type", std::string(scaling == std::string("rope_parameters") ? "default" : "")));
      const double factor = r.value("factor", 1.0);
      if (kind == "linear") {
        c.rope_divisors.assign(static_cast<std::size_t>(c.head_dim / 2), static_cast<float>(factor));
      } else if (kind == "llama3") {
        c.rope_divisors = rope_llama3_divisors(c.rope_theta, c.head_dim, factor, r.value("low_freq_factor", 1.0),
                                               r.value("high_freq_factor", 4.0), r.value("original_max_position_embeddings", 8192.0));
      } else if (kind == "longrope" || kind == "su") {  // Phi-3's LongRoPE (transformers' _compute_longrope_parameters)
        const Index rotary = static_cast<Index>(static_cast<double>(c.head_dim) * r.value("partial_rotary_factor", j.value("partial_rotary_factor", 1.0)));
        const auto factors = [&](const char* key) {
          std::vector<float> f = r.at(key).get<std::vector<float>>();
          if (f.size() != static_cast<std::size_t>(rotary / 2))
            throw Error(config_path.string() + ": " + scaling + "." + key + " has " + std::to_string(f.size()) + " values, expected " +
                        std::to_string(rotary / 2) + " (one per rotated pair)");
          return f;
        };
        const double original = r.value("original_max_position_embeddings", j.value("original_max_position_embeddings", 4096.0));
        const double stretch = r.contains("factor") && !r["factor"].is_null() ? r["factor"].get<double>()
                                                                              : j.value("max_position_embeddings", original) / original;
        c.rope_divisors = factors("short_factor");
        c.rope_long_divisors = factors("long_factor");
        c.rope_long_after = static_cast<Index>(original);
        c.rope_attention_factor = r.contains("attention_factor") && !r["attention_factor"].is_null()
                                      ? r["attention_factor"].get<float>()
                                      : stretch <= 1 ? 1.0f : static_cast<float>(std::sqrt(1 + std::log(stretch) / std::log(original)));
      } else if (kind == "yarn") {  // GPT-OSS (transformers' _compute_yarn_parameters)
        const Index rotary = static_cast<Index>(static_cast<double>(c.head_dim) * r.value("partial_rotary_factor", j.value("partial_rotary_factor", 1.0)));
        // transformers 5.17: without a factor, max_position_embeddings / original_max_position_embeddings
        const bool has_original = r.contains("original_max_position_embeddings") && !r["original_max_position_embeddings"].is_null();
        const double original = has_original ? r["original_max_position_embeddings"].get<double>() : j.value("max_position_embeddings", 4096.0);
        const double stretch = r.contains("factor") && !r["factor"].is_null() ? factor : j.value("max_position_embeddings", original) / original;
        const auto number = [&](const char* key, double fallback) { return r.contains(key) && !r[key].is_null() ? r[key].get<double>() : fallback; };
        c.rope_divisors = rope_yarn_divisors(c.rope_theta, rotary, stretch, number("beta_fast", 32), number("beta_slow", 1), original,
                                             r.value("truncate", true));
        c.rope_attention_factor = r.contains("attention_factor") && !r["attention_factor"].is_null()
                                      ? r["attention_factor"].get<float>()
                                      : rope_yarn_attention_factor(stretch, number("mscale", 0), number("mscale_all_dim", 0));
      } else if (kind != "default" && !(qwen_vl && kind == "mrope")) {  // mrope on text-only positions: plain RoPE
        throw Error(config_path.string() + ": " + scaling + " type '" + kind + "' is not supported (linear, llama3, longrope, yarn)");
      }
    }
    // partial rotary embedding (Phi-4-mini: 0.75 of each head rotates), in RoPE's settings or at the top
    const double partial = scaling ? j[scaling].value("partial_rotary_factor", j.value("partial_rotary_factor", 1.0))
                                   : j.value("partial_rotary_factor", 1.0);
    if (partial < 1.0) c.rotary_dims = static_cast<Index>(static_cast<double>(c.head_dim) * partial);
    if (deepseek) {  // transformers' yarn_apply_mscale: (qk_nope + qk_rope)^−½ × mscale(factor, mscale_all_dim)², with a scaling
      double scale = 1.0 / std::sqrt(static_cast<double>(c.qk_head_dim()));
      if (scaling) {
        const auto& r = j[scaling];
        const std::string kind = r.value("rope_type", r.value("type", std::string("default")));
        const double all_dim = r.contains("mscale_all_dim") && !r["mscale_all_dim"].is_null() ? r["mscale_all_dim"].get<double>() : 0.0;
        const double factor = r.value("factor", 1.0);
        if (kind != "default" && all_dim != 0 && factor > 1) scale *= std::pow(0.1 * all_dim * std::log(factor) + 1.0, 2);
      }
      c.attention_scale = static_cast<float>(scale);
    }
    if (type == "phi3" && j.contains("sliding_window") && !j["sliding_window"].is_null()) {  // Phi-3: every layer slides
      c.sliding_window = j["sliding_window"].get<Index>();
      c.sliding.assign(static_cast<std::size_t>(c.layers), true);
    }
    qc_ = quantization_config_of(root, config_path);
  }

  static nlohmann::json quantization_config_of(const nlohmann::json& root, const std::filesystem::path& config_path) {
    try {
      return detail::auto_round_view(root.value("quantization_config", nlohmann::json::object()));
    } catch (const Error& e) {
      throw Error(config_path.string() + ": " + e.what());
    } catch (const nlohmann::json::exception& e) {
      throw Error(config_path.string() + ": quantization_config: " + e.what());
    }
  }

  /// Gemma 2 / Gemma 3's settings (LlamaConfig's Gemma part): GeGLU, sandwich norms with (1 + w)
  /// weights, query_pre_attn_scalar, soft-capping, sliding-window layers and their RoPE.
  void read_gemma(const nlohmann::json& j) {
    LlamaConfig& c = config_;
    const bool g4 = c.model_type == "gemma4_text";
    const bool g3 = c.model_type == "gemma3_text" || g4;  // Gemma 4's block is Gemma 3's with the differences read_gemma4 reads
    const std::string act = j.contains("hidden_activation") && !j["hidden_activation"].is_null() ? j["hidden_activation"].get<std::string>()
                                                                                                 : j.value("hidden_act", std::string("gelu_pytorch_tanh"));
    if (act != "gelu_pytorch_tanh" && act != "gelu_tanh")
      throw Error("hidden_activation '" + act + "' is not supported (gelu_pytorch_tanh)");
    if (j.contains("use_bidirectional_attention") &&
        ((j["use_bidirectional_attention"].is_boolean() && j["use_bidirectional_attention"].get<bool>()) ||
         (j["use_bidirectional_attention"].is_string() && j["use_bidirectional_attention"].get<std::string>() == "all")))
      throw Error("use_bidirectional_attention is not supported (a decoder's causal attention only)");
    c.activation = MlpActivation::GeluTanh;
    c.norm_weight_plus_one = !g4;  // Gemma 4's norms multiply by w itself
    c.attention_scale = g4 ? 1.0f : 1.0f / std::sqrt(j.value("query_pre_attn_scalar", static_cast<float>(c.head_dim)));
    const auto number = [&](const char* key) { return j.contains(key) && !j[key].is_null() ? j[key].get<float>() : 0.0f; };
    c.attention_softcap = number("attn_logit_softcapping");
    c.logit_softcap = number("final_logit_softcapping");
    // which layers slide: layer_types, else the old pattern (Gemma 3: every 6th layer full; Gemma 2: every 2nd)
    read_layer_types(j, g3 ? 6 : 2);
    // RoPE: transformers 5 keeps one parameter set per layer type; 4.x rope_theta (+ rope_scaling)
    // for full layers and rope_local_base_freq for sliding ones (Gemma 2: one base for both)
    nlohmann::json full = nlohmann::json::object(), local = nlohmann::json::object();
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object() && j["rope_parameters"].contains("full_attention")) {
      full = j["rope_parameters"]["full_attention"];
      local = j["rope_parameters"].value("sliding_attention", nlohmann::json::object());
    } else {
      full = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"]
             : j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"] : nlohmann::json::object();
      if (j.contains("rope_theta") && !j["rope_theta"].is_null()) full["rope_theta"] = j["rope_theta"];
      if (j.contains("rope_local_base_freq")) local["rope_theta"] = j["rope_local_base_freq"];
    }
    const float default_theta = g3 ? 1000000.0f : 10000.0f;
    c.rope_theta = full.contains("rope_theta") && !full["rope_theta"].is_null() ? full["rope_theta"].get<float>() : default_theta;
    if (g4) read_gemma4(j);
    const Index full_dim = c.full_head_dim > 0 ? c.full_head_dim : c.head_dim;  // the full layers' RoPE turns their heads
    const std::string kind = full.value("rope_type", full.value("type", std::string("default")));
    if (kind == "linear") {
      c.rope_divisors.assign(static_cast<std::size_t>(full_dim / 2), full.value("factor", 1.0f));
    } else if (kind == "proportional") {
      // Gemma 4 (transformers' _compute_proportional_rope_parameters): pair i < p·dim/2 turns at
      // theta^(−2i/dim) / factor, the pairs beyond not at all (frequency 0: divisor ∞), rotate-half
      // pairs (i, i + dim/2) over the whole head
      const auto rotated = static_cast<Index>(full.value("partial_rotary_factor", 1.0) * static_cast<double>(full_dim) / 2.0);
      c.rope_divisors.assign(static_cast<std::size_t>(full_dim / 2), std::numeric_limits<float>::infinity());
      std::fill_n(c.rope_divisors.begin(), std::min(rotated, full_dim / 2), full.value("factor", 1.0f));
    } else if (kind != "default") {
      throw Error("full-attention RoPE type '" + kind + "' is not supported (default, linear, proportional)");
    }
    const std::string local_kind = local.value("rope_type", local.value("type", std::string("default")));
    if (local_kind != "default") throw Error("sliding-attention RoPE type '" + local_kind + "' is not supported (default)");
    c.sliding_rope_theta = local.contains("rope_theta") && !local["rope_theta"].is_null() ? local["rope_theta"].get<float>()
                           : g3 ? 10000.0f : 0.0f;
  }

  /// Gemma 4's dense text model (31B's layout): its full-attention layers' own head size and KV
  /// heads (transformers 5.17 writes them as per_layer_config, released configs as
  /// global_head_dim / num_global_key_value_heads), keys as values (attention_k_eq_v), v_norm. The
  /// per-layer embeddings and KV sharing of E2B / E4B are refused by name; the 26B-A4B's experts
  /// (enable_moe_block) read as a MoE layout (hf_moe.hpp).
  void read_gemma4(const nlohmann::json& j) {
    LlamaConfig& c = config_;
    const auto integer = [&](const char* key, Index fallback) { return j.contains(key) && !j[key].is_null() ? j[key].get<Index>() : fallback; };
    // E2B / E4B: per-layer embeddings (transformers' default width is 256: a config must say 0 to
    // have none), the last layers' keys and values shared, their MLP double-wide
    c.per_layer_input = integer("hidden_size_per_layer_input", 256);
    c.per_layer_vocab = c.per_layer_input > 0 ? integer("vocab_size_per_layer_input", 262144) : 0;
    c.kv_shared_layers = integer("num_kv_shared_layers", 0);
    c.double_wide_mlp = c.kv_shared_layers > 0 && j.value("use_double_wide_mlp", false);
    if (c.per_layer_input < 0 || c.kv_shared_layers < 0 || c.kv_shared_layers >= c.layers)
      throw Error("hidden_size_per_layer_input / num_kv_shared_layers out of range");
    if (j.value("enable_moe_block", false)) {  // the 26B-A4B: experts beside every dense MLP
      if (c.per_layer_input > 0 || c.kv_shared_layers > 0)
        throw Error("enable_moe_block with per-layer embeddings or shared key/value layers is not supported");
      moe_ = moe_layout(j, c.layers), c.experts = moe_->experts;
    }
    c.value_norm = true;
    c.full_values_from_keys = j.value("attention_k_eq_v", false);
    for (Index l = c.layers - c.kv_shared_layers; c.kv_shared_layers > 0 && l < c.layers; ++l)
      if (c.kv_donor(l) < 0)
        throw Error("num_kv_shared_layers: shared layer " + std::to_string(l) + " has no earlier layer of its kind to take keys and values from");
    c.full_head_dim = integer("global_head_dim", 512);
    c.full_kv_heads = c.full_values_from_keys ? integer("num_global_key_value_heads", 0) : 0;
    if (j.contains("per_layer_config") && j["per_layer_config"].is_object()) {  // {"layer": {"head_dim": .., "num_key_value_heads": ..}}
      bool first = true;
      for (const auto& [layer, entry] : j["per_layer_config"].items()) {
        Index index = -1;
        try {
          index = std::stol(layer);
        } catch (const std::exception&) {
          throw Error("per_layer_config: '" + layer + "' is not a layer index");
        }
        if (index < 0 || index >= c.layers) throw Error("per_layer_config: no layer " + layer);
        const Index dim = entry.value("head_dim", c.head_dim), kv = entry.value("num_key_value_heads", c.kv_heads);
        if (c.is_sliding(index) ? dim != c.head_dim || kv != c.kv_heads : !first && (dim != c.full_head_dim || kv != c.full_kv_heads))
          throw Error("per_layer_config: layer " + layer + "'s head_dim / num_key_value_heads differ from the other layers of its type");
        if (!c.is_sliding(index)) c.full_head_dim = dim, c.full_kv_heads = kv, first = false;
      }
    }
    if (c.full_kv_heads == c.kv_heads) c.full_kv_heads = 0;
    if (c.full_head_dim <= 0 || c.full_head_dim % 2 != 0 || (c.full_kv_heads > 0 && c.heads % c.full_kv_heads != 0))
      throw Error("inconsistent full-attention layer sizes (global_head_dim even, heads a multiple of num_global_key_value_heads)");
  }

  /// Which layers slide: config.json's layer_types ("sliding_attention" / "full_attention"), else
  /// every layer but each `pattern`-th (sliding_window_pattern where given); and the window.
  void read_layer_types(const nlohmann::json& j, Index pattern) {
    LlamaConfig& c = config_;
    c.sliding.assign(static_cast<std::size_t>(c.layers), false);
    if (j.contains("layer_types") && j["layer_types"].is_array()) {
      const auto& types = j["layer_types"];
      if (types.size() != static_cast<std::size_t>(c.layers)) throw Error("layer_types has " + std::to_string(types.size()) + " entries, not num_hidden_layers");
      for (std::size_t i = 0; i < types.size(); ++i) {
        const std::string t = types[i].get<std::string>();
        if (t != "sliding_attention" && t != "full_attention") throw Error("layer_types: '" + t + "' is not supported");
        c.sliding[i] = t == "sliding_attention";
      }
    } else {
      pattern = j.value("sliding_window_pattern", pattern);
      for (Index i = 0; i < c.layers; ++i) c.sliding[static_cast<std::size_t>(i)] = pattern > 0 && (i + 1) % pattern != 0;
    }
    const bool any_sliding = std::find(c.sliding.begin(), c.sliding.end(), true) != c.sliding.end();
    c.sliding_window = any_sliding ? j.at("sliding_window").get<Index>() : 0;
    if (any_sliding && c.sliding_window <= 0) throw Error("sliding_window must be positive");
  }

  std::filesystem::path dir_;
  LlamaConfig config_;
  std::optional<MoeLayout> moe_;  // qwen3_moe, qwen2_moe, mixtral: which layers are sparse, how they route
  bool glm_qkv_bias_ = false, glm_qk_norm_ = false;  // glm4_moe's attention_bias (q/k/v only) and use_qk_norm
  bool tie_from_tensors_ = false;  // a vision-language config without tie_word_embeddings: tied when no LM head is stored
  nlohmann::json qc_;
  std::optional<SafetensorsCheckpoint> ckpt_;
};

static_assert(ModelSource<HfModelSource>);

inline LlamaModel load_llama_hf(const std::filesystem::path& dir) { return load_model(HfModelSource(dir)); }

}  // namespace autoround

namespace autoround {

/// A directory is read as a Hugging Face checkpoint, a file as GGUF.
inline LlamaModel load_llama(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) return load_llama_hf(path);
  return load_llama_gguf(path.string());
}

}  // namespace autoround
