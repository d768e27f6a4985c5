#pragma once
// The mixture-of-experts feed-forward of a Hugging Face checkpoint: which layers have one and how
// they route (MoeLayout, from config.json), and a layer's router, experts and shared expert in
// float32 (load_moe) for model/moe_mlp.hpp. Families and the names they use on disk:
//   qwen3_moe, qwen2_moe  mlp.gate.weight, mlp.experts.E.{gate,up,down}_proj.weight;
//                         qwen2_moe: mlp.shared_expert.{gate,up,down}_proj, mlp.shared_expert_gate
//   mixtral               block_sparse_moe.gate.weight, block_sparse_moe.experts.E.{w1,w3,w2} (or, as the
//                         reference exports it, .{gate,up,down}_proj)
//                         (gate, up, down), or the same under mlp.
//   deepseek_v3, glm4_moe mlp.gate.weight, mlp.gate.e_score_correction_bias,
//                         mlp.experts.E.{gate,up,down}_proj, mlp.shared_experts.{gate,up,down}_proj
//   gemma4_text           router.{proj.weight,scale,per_expert_scale}, experts.gate_up_proj [E, 2·I, H]
//                         (gate rows first), experts.down_proj [E, H, I] (no "mlp.": beside the dense
//                         MLP, hf_loader.hpp's); exported per expert: experts.E.{gate,up,down}_proj
//   gpt_oss               mlp.router.{weight,bias}; mlp.experts.gate_up_proj [E, H, 2·I] used as
//                         x·W (gate the even columns, up the odd ones) with gate_up_proj_bias
//                         [E, 2·I], down_proj [E, I, H] with down_proj_bias [E, H]; the released
//                         checkpoints hold the two weights in MXFP4 instead (…_blocks [E, out, in/32,
//                         16] bytes, two E2M1 codes each, low nibble first; …_scales [E, out, in/32]
//                         E8M0 bytes: value = code · 2^(scale − 127), rows out = 2·I interleaved
//                         gate/up, or H); what we export, per expert: mlp.experts.E.{gate,up,down}_proj
//                         with .bias (the reference's unfused modules).
// Checkpoints transformers 5 saved fused (save_original_format=False) hold
// mlp.experts.gate_up_proj [E, 2·I, H] (each expert's gate rows, then its up rows) and
// mlp.experts.down_proj [E, H, I]; both layouts are read. (DeepSeek-V3's released weights are FP8
// blocks: to_float names the dtype it cannot convert.)
// Which layers are sparse: Qwen, layer i unless i is in mlp_only_layers or (i + 1) is not a
// multiple of decoder_sparse_step; DeepSeek-V3 and GLM, i ≥ first_k_dense_replace; Mixtral, all.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../format/safetensors.hpp"
#include "../quantizer/minifloat.hpp"
#include "moe_mlp.hpp"

namespace autoround {

struct MoeLayout {
  std::string family;             ///< config.json's model_type
  MoeSpec spec;                   ///< routing and activation
  Index experts = 0, expert_intermediate = 0;
  Index shared_intermediate = 0;  ///< 0: no shared expert
  bool shared_gate = false;       ///< the shared expert's output scaled by sigmoid(x · w) (Qwen2-MoE)
  std::vector<bool> sparse;       ///< per layer: true where the MLP is the MoE
};

namespace detail {
template <class T>
T config_value(const nlohmann::json& c, const char* key, T fallback) {
  return c.contains(key) && !c[key].is_null() ? c[key].get<T>() : fallback;
}
template <class T>
T config_required(const nlohmann::json& c, const char* key, const std::string& family) {
  if (!c.contains(key) || c[key].is_null()) throw Error("config.json (" + family + "): no '" + key + "'");
  return c[key].get<T>();
}
}  // namespace detail

/// The MoE layout a config.json describes (`layers`: num_hidden_layers).
inline MoeLayout moe_layout(const nlohmann::json& config, Index layers) {
  MoeLayout m;
  m.family = detail::config_value<std::string>(config, "model_type", "");
  const std::string& f = m.family;
  m.sparse.assign(static_cast<std::size_t>(layers), true);
  // Gemma 4: transformers 5.17 reads top_k_experts (llama.cpp's converter num_experts_per_tok first)
  const bool gemma4 = f == "gemma4_text";
  m.spec.top_k = detail::config_required<Index>(
      config, gemma4 && (config.contains("top_k_experts") || !config.contains("num_experts_per_tok")) ? "top_k_experts" : "num_experts_per_tok", f);
  if (gemma4) {  // the 26B-A4B (enable_moe_block): GeGLU experts beside every layer's dense MLP
    m.experts = detail::config_required<Index>(config, "num_experts", f);
    m.expert_intermediate = detail::config_required<Index>(config, "moe_intermediate_size", f);
    m.spec.normalize = true;
    m.spec.activation = ExpertActivation::GeGlu;
  } else if (f == "qwen3_moe" || f == "qwen2_moe") {
    // transformers 5.17 saves qwen3_moe's expert count as num_local_experts
    if (!config.contains("num_experts") && !config.contains("num_local_experts"))
      throw Error("config.json (" + f + "): no 'num_experts' (nor 'num_local_experts')");
    m.experts = detail::config_required<Index>(config, config.contains("num_experts") ? "num_experts" : "num_local_experts", f);
    m.expert_intermediate = detail::config_required<Index>(config, "moe_intermediate_size", f);
    m.spec.normalize = detail::config_value<bool>(config, "norm_topk_prob", false);
    const Index step = detail::config_value<Index>(config, "decoder_sparse_step", 1);
    const auto dense = detail::config_value<std::vector<Index>>(config, "mlp_only_layers", {});
    for (Index i = 0; i < layers; ++i)
      m.sparse[static_cast<std::size_t>(i)] = std::find(dense.begin(), dense.end(), i) == dense.end() && step > 0 && (i + 1) % step == 0;
    if (f == "qwen2_moe") {
      m.shared_intermediate = detail::config_value<Index>(config, "shared_expert_intermediate_size", 0);
      m.shared_gate = m.shared_intermediate > 0;
    }
  } else if (f == "mixtral") {
    m.experts = detail::config_required<Index>(config, "num_local_experts", f);
    m.expert_intermediate = detail::config_required<Index>(config, "intermediate_size", f);
    m.spec.normalize = true;
  } else if (f == "deepseek_v3" || f == "glm4_moe") {  // GLM-4.5's MoE is DeepSeek-V3's (its own names for the same keys)
    m.experts = detail::config_required<Index>(config, "n_routed_experts", f);
    m.expert_intermediate = detail::config_required<Index>(config, "moe_intermediate_size", f);
    m.shared_intermediate = detail::config_value<Index>(config, "n_shared_experts", 0) * m.expert_intermediate;
    const std::string scoring = detail::config_value<std::string>(config, "scoring_func", "sigmoid");
    detail::require(scoring == "sigmoid", "config.json (" + f + "): scoring_func '" + scoring + "' is not supported (sigmoid)");
    m.spec.scoring = RouterScoring::SigmoidGrouped;
    m.spec.normalize = detail::config_value<bool>(config, "norm_topk_prob", true);
    m.spec.groups = detail::config_value<Index>(config, "n_group", 1);
    m.spec.top_groups = detail::config_value<Index>(config, "topk_group", 1);
    m.spec.scale = detail::config_value<float>(config, "routed_scaling_factor", 1.0f);
    const Index first_sparse = detail::config_value<Index>(config, "first_k_dense_replace", 0);
    for (Index i = 0; i < std::min(first_sparse, layers); ++i) m.sparse[static_cast<std::size_t>(i)] = false;
  } else if (f == "gpt_oss") {  // alpha 1.702 and limit 7 are transformers' constants (it reads no swiglu_limit)
    m.experts = detail::config_required<Index>(config, "num_local_experts", f);
    m.expert_intermediate = detail::config_required<Index>(config, "intermediate_size", f);
    m.spec.scoring = RouterScoring::TopKSoftmax;
    m.spec.activation = ExpertActivation::ClampedSwiGlu;
    m.spec.normalize = false;  // the softmax over the k chosen logits sums to 1 already
  } else {
    throw Error("config.json: model_type '" + f + "' has no mixture-of-experts layout here (qwen3_moe, qwen2_moe, mixtral, deepseek_v3, glm4_moe, gpt_oss, gemma4_text)");
  }
  detail::require(m.experts > 0 && m.expert_intermediate > 0 && m.spec.top_k >= 1 && m.spec.top_k <= m.experts,
                  "config.json (" + f + "): inconsistent expert counts (" + std::to_string(m.experts) + " experts, top " +
                      std::to_string(m.spec.top_k) + ", intermediate " + std::to_string(m.expert_intermediate) + ")");
  return m;
}

namespace detail {
/// An MXFP4 tensor as GPT-OSS's checkpoints store it (transformers' convert_moe_packed_tensors):
/// `blocks` U8 [E, rows, groups, 16], `scales` U8 [E, rows, groups]; element 32 g + 2 j of a row is
/// the E2M1 code in byte j's low nibble, 32 g + 2 j + 1 its high one, times 2^(scale − 127).
/// Returns [E · rows, groups · 32] float32, each expert's rows in turn.
inline RowMatrix mxfp4_experts(const SafetensorsCheckpoint& ckpt, const std::string& blocks, const std::string& scales, Index experts,
                               Index rows, Index cols) {
  const SafetensorsTensor& b = ckpt.tensor(blocks);
  const SafetensorsTensor& s = ckpt.tensor(scales);
  const Index groups = cols / 32;
  auto shape = [](const std::vector<std::int64_t>& v) {
    std::string r;
    for (auto d : v) r += (r.empty() ? "" : ", ") + std::to_string(d);
    return "[" + r + "]";
  };
  if (cols % 32 != 0) throw Error("tensor '" + blocks + "': MXFP4 rows of " + std::to_string(cols) + " values are not groups of 32");
  if (b.dtype != Dtype::U8 || b.shape != std::vector<std::int64_t>{experts, rows, groups, 16})
    throw Error("tensor '" + blocks + "' is " + dtype_name(b.dtype) + " " + shape(b.shape) + ", expected U8 " +
                shape({experts, rows, groups, 16}));
  if (s.dtype != Dtype::U8 || s.shape != std::vector<std::int64_t>{experts, rows, groups})
    throw Error("tensor '" + scales + "' is " + dtype_name(s.dtype) + " " + shape(s.shape) + ", expected U8 " + shape({experts, rows, groups}));
  RowMatrix out(experts * rows, cols);
  const auto* code = reinterpret_cast<const std::uint8_t*>(b.data.data());
  const auto* scale = reinterpret_cast<const std::uint8_t*>(s.data.data());
  for (Index r = 0; r < experts * rows; ++r)
    for (Index g = 0; g < groups; ++g) {
      const float unit = minifloat::e8m0_value(scale[r * groups + g]);
      const std::uint8_t* bytes = code + (r * groups + g) * 16;
      for (Index j = 0; j < 16; ++j) {
        out(r, g * 32 + 2 * j) = minifloat::e2m1_value(static_cast<std::uint8_t>(bytes[j] & 0xF)) * unit;
        out(r, g * 32 + 2 * j + 1) = minifloat::e2m1_value(static_cast<std::uint8_t>(bytes[j] >> 4)) * unit;
      }
    }
  ckpt.release(blocks);
  ckpt.release(scales);
  return out;
}
}  // namespace detail

/// Reads a quantized linear layer (name without ".weight", [out, in]) as float32: how a checkpoint
/// we or the reference wrote (auto_round / GPTQ / AWQ experts) is read back (hf_loader.hpp's).
using QuantizedLinearReader = std::function<RowMatrix(const std::string& layer, Index out, Index in)>;

namespace detail {
/// GPT-OSS's experts (the layouts in this file's header): fused, fused in MXFP4, or per expert as
/// exported; `load(name, rows, cols)` and `vector(name, size)` read and check one tensor.
template <class Load, class Vector>
MoeWeights load_gpt_oss_moe(const SafetensorsCheckpoint& ckpt, const std::string& p, Index e_count, Index inter, Index hidden, Load& load,
                            Vector& vector) {
  MoeWeights w;
  w.router = load(p + "router.weight", e_count, hidden);
  w.router_bias = vector(p + "router.bias", e_count);
  w.experts.resize(static_cast<std::size_t>(e_count));
  const std::string x = p + "experts.";
  if (!ckpt.contains(x + "gate_up_proj") && !ckpt.contains(x + "gate_up_proj_blocks")) {  // per expert, as we export
    for (Index e = 0; e < e_count; ++e) {
      ExpertWeights& ex = w.experts[static_cast<std::size_t>(e)];
      const std::string q = x + std::to_string(e) + ".";
      ex.gate = load(q + "gate_proj.weight", inter, hidden);
      ex.up = load(q + "up_proj.weight", inter, hidden);
      ex.down = load(q + "down_proj.weight", hidden, inter);
      ex.gate_bias = vector(q + "gate_proj.bias", inter);
      ex.up_bias = vector(q + "up_proj.bias", inter);
      ex.down_bias = vector(q + "down_proj.bias", hidden);
    }
    return w;
  }
  // [E · 2I, H] and [E · H, I] as rows = outputs: the MXFP4 blocks are stored so, the float
  // tensors (x·W, [E, H, 2I] and [E, I, H]) transposed per expert
  RowMatrix gate_up, down;
  if (ckpt.contains(x + "gate_up_proj_blocks")) {
    gate_up = mxfp4_experts(ckpt, x + "gate_up_proj_blocks", x + "gate_up_proj_scales", e_count, 2 * inter, hidden);
    down = mxfp4_experts(ckpt, x + "down_proj_blocks", x + "down_proj_scales", e_count, hidden, inter);
  } else {
    const RowMatrix gu = load(x + "gate_up_proj", e_count * hidden, 2 * inter), dn = load(x + "down_proj", e_count * inter, hidden);
    gate_up.resize(e_count * 2 * inter, hidden);
    down.resize(e_count * hidden, inter);
    for (Index e = 0; e < e_count; ++e) {
      gate_up.middleRows(e * 2 * inter, 2 * inter) = gu.middleRows(e * hidden, hidden).transpose();
      down.middleRows(e * hidden, hidden) = dn.middleRows(e * inter, inter).transpose();
    }
  }
  const RowMatrix gate_up_bias = load(x + "gate_up_proj_bias", e_count, 2 * inter), down_bias = load(x + "down_proj_bias", e_count, hidden);
  for (Index e = 0; e < e_count; ++e) {
    ExpertWeights& ex = w.experts[static_cast<std::size_t>(e)];
    ex.gate.resize(inter, hidden);
    ex.up.resize(inter, hidden);
    ex.gate_bias.resize(inter);
    ex.up_bias.resize(inter);
    for (Index i = 0; i < inter; ++i) {  // interleaved: gate i is row 2i, up i row 2i + 1
      ex.gate.row(i) = gate_up.row(e * 2 * inter + 2 * i);
      ex.up.row(i) = gate_up.row(e * 2 * inter + 2 * i + 1);
      ex.gate_bias(i) = gate_up_bias(e, 2 * i);
      ex.up_bias(i) = gate_up_bias(e, 2 * i + 1);
    }
    ex.down = down.middleRows(e * hidden, hidden);
    ex.down_bias = down_bias.row(e).transpose();
  }
  return w;
}
}  // namespace detail

/// Layer `layer`'s MoE weights in float32 (`hidden`: the model's hidden size; `prefix`: where the
/// language model's tensors are, LlamaConfig::hf_prefix), each tensor's
/// shape checked against the layout; errors name the tensor. An expert stored quantized (no
/// ".weight") is read by `quantized` when given.
inline MoeWeights load_moe(const SafetensorsCheckpoint& ckpt, const MoeLayout& m, Index layer, Index hidden,
                           const std::string& prefix = "model.", const QuantizedLinearReader& quantized = {}) {
  detail::require(layer >= 0 && layer < static_cast<Index>(m.sparse.size()) && m.sparse[static_cast<std::size_t>(layer)],
                  "load_moe: layer " + std::to_string(layer) + " has no mixture of experts");
  const std::string layer_prefix = prefix + "layers." + std::to_string(layer) + ".";
  const bool mixtral_names = m.family == "mixtral" && ckpt.contains(layer_prefix + "block_sparse_moe.gate.weight");
  const bool gemma4 = m.family == "gemma4_text";  // (its router and experts beside the MLP, not in it)
  const std::string p = layer_prefix + (gemma4 ? "" : mixtral_names ? "block_sparse_moe." : "mlp.");
  auto load = [&](const std::string& name, Index rows, Index cols) {
    const std::string suffix = ".weight";
    const bool linear = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    const std::string layer = linear ? name.substr(0, name.size() - suffix.size()) : std::string();
    // MXFP8 / FP8 layers keep the name "weight" for their E4M3 codes, a weight_scale (or FP8_BLOCK's weight_scale_inv) beside them
    const bool codes = linear && (ckpt.contains(layer + ".weight_scale") || ckpt.contains(layer + ".weight_scale_inv"));
    if ((!ckpt.contains(name) || codes) && linear && quantized) return quantized(layer, rows, cols);
    if (!ckpt.contains(name)) throw Error("checkpoint: no tensor named '" + name + "'");
    RowMatrix w = ckpt.to_float(name);
    ckpt.release(name);
    if (w.rows() != rows || w.cols() != cols)
      throw Error("tensor '" + name + "' is " + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + ", expected " +
                  std::to_string(rows) + "x" + std::to_string(cols));
    return w;
  };
  const Index e_count = m.experts, inter = m.expert_intermediate;
  MoeWeights w;
  auto vector = [&](const std::string& name, Index size) -> Eigen::VectorXf { return load(name, 1, size).row(0).transpose(); };
  if (m.family == "gpt_oss") return detail::load_gpt_oss_moe(ckpt, p, e_count, inter, hidden, load, vector);
  w.router = load(p + (gemma4 ? "router.proj.weight" : "gate.weight"), e_count, hidden);
  if (gemma4) w.expert_scale = vector(p + "router.per_expert_scale", e_count);
  if (m.spec.scoring == RouterScoring::SigmoidGrouped)
    w.correction_bias = load(p + "gate.e_score_correction_bias", 1, e_count).row(0).transpose();
  w.experts.resize(static_cast<std::size_t>(e_count));
  if (ckpt.contains(p + "experts.gate_up_proj")) {  // transformers 5's fused layout
    const RowMatrix gate_up = load(p + "experts.gate_up_proj", e_count * 2 * inter, hidden);
    const RowMatrix down = load(p + "experts.down_proj", e_count * hidden, inter);
    for (Index e = 0; e < e_count; ++e) {
      ExpertWeights& ex = w.experts[static_cast<std::size_t>(e)];
      ex.gate = gate_up.middleRows(e * 2 * inter, inter);
      ex.up = gate_up.middleRows(e * 2 * inter + inter, inter);
      ex.down = down.middleRows(e * hidden, hidden);
    }
  } else {
    const char* names[3] = {"gate_proj", "up_proj", "down_proj"};
    // Mixtral as transformers saves it: w1 / w3 / w2; as the reference saves its unfused experts: gate_proj / up_proj / down_proj
    const std::string first = p + "experts.0.w1";
    if (m.family == "mixtral" && (ckpt.contains(first + ".weight") || ckpt.contains(first + ".qweight"))) names[0] = "w1", names[1] = "w3", names[2] = "w2";
    for (Index e = 0; e < e_count; ++e) {
      ExpertWeights& ex = w.experts[static_cast<std::size_t>(e)];
      const std::string q = p + "experts." + std::to_string(e) + ".";
      ex.gate = load(q + names[0] + ".weight", inter, hidden);
      ex.up = load(q + names[1] + ".weight", inter, hidden);
      ex.down = load(q + names[2] + ".weight", hidden, inter);
    }
  }
  if (m.shared_intermediate > 0) {
    const std::string q = p + (m.family == "qwen2_moe" ? "shared_expert." : "shared_experts.");
    const Index si = m.shared_intermediate;
    w.shared = ExpertWeights{load(q + "gate_proj.weight", si, hidden), load(q + "up_proj.weight", si, hidden),
                             load(q + "down_proj.weight", hidden, si), {}, {}, {}};
    if (m.shared_gate) w.shared_gate = load(p + "shared_expert_gate.weight", 1, hidden).row(0).transpose();
  }
  return w;
}

}  // namespace autoround
