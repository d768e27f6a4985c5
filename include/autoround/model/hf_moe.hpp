#pragma once
// The mixture-of-experts feed-forward of a Hugging Face checkpoint: which layers have one and how
// they route (MoeLayout, from config.json), and a layer's router, experts and shared expert in
// float32 (load_moe) for model/moe_mlp.hpp. Families and the names they use on disk:
//   qwen3_moe, qwen2_moe  mlp.gate.weight, mlp.experts.E.{gate,up,down}_proj.weight;
//                         qwen2_moe: mlp.shared_expert.{gate,up,down}_proj, mlp.shared_expert_gate
//   mixtral               block_sparse_moe.gate.weight, block_sparse_moe.experts.E.{w1,w3,w2}
//                         (gate, up, down), or the same under mlp.
//   deepseek_v3           mlp.gate.weight, mlp.gate.e_score_correction_bias,
//                         mlp.experts.E.{gate,up,down}_proj, mlp.shared_experts.{gate,up,down}_proj
// Checkpoints transformers 5 saved fused (save_original_format=False) hold
// mlp.experts.gate_up_proj [E, 2·I, H] (each expert's gate rows, then its up rows) and
// mlp.experts.down_proj [E, H, I]; both layouts are read. (GPT-OSS ships its experts in MXFP4:
// not read yet. DeepSeek-V3's released weights are FP8 blocks: to_float names the dtype it
// cannot convert.)
// Which layers are sparse: Qwen, layer i unless i is in mlp_only_layers or (i + 1) is not a
// multiple of decoder_sparse_step; DeepSeek-V3, i ≥ first_k_dense_replace; Mixtral, all.
#include <functional>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../format/safetensors.hpp"
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
  m.spec.top_k = detail::config_required<Index>(config, "num_experts_per_tok", f);
  m.sparse.assign(static_cast<std::size_t>(layers), true);
  if (f == "qwen3_moe" || f == "qwen2_moe") {
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
  } else if (f == "deepseek_v3") {
    m.experts = detail::config_required<Index>(config, "n_routed_experts", f);
    m.expert_intermediate = detail::config_required<Index>(config, "moe_intermediate_size", f);
    m.shared_intermediate = detail::config_value<Index>(config, "n_shared_experts", 0) * m.expert_intermediate;
    const std::string scoring = detail::config_value<std::string>(config, "scoring_func", "sigmoid");
    detail::require(scoring == "sigmoid", "config.json (deepseek_v3): scoring_func '" + scoring + "' is not supported (sigmoid)");
    m.spec.scoring = RouterScoring::SigmoidGrouped;
    m.spec.normalize = detail::config_value<bool>(config, "norm_topk_prob", true);
    m.spec.groups = detail::config_value<Index>(config, "n_group", 1);
    m.spec.top_groups = detail::config_value<Index>(config, "topk_group", 1);
    m.spec.scale = detail::config_value<float>(config, "routed_scaling_factor", 1.0f);
    const Index first_sparse = detail::config_value<Index>(config, "first_k_dense_replace", 0);
    for (Index i = 0; i < std::min(first_sparse, layers); ++i) m.sparse[static_cast<std::size_t>(i)] = false;
  } else {
    throw Error("config.json: model_type '" + f + "' has no mixture-of-experts layout here (qwen3_moe, qwen2_moe, mixtral, deepseek_v3)");
  }
  detail::require(m.experts > 0 && m.expert_intermediate > 0 && m.spec.top_k >= 1 && m.spec.top_k <= m.experts,
                  "config.json (" + f + "): inconsistent expert counts (" + std::to_string(m.experts) + " experts, top " +
                      std::to_string(m.spec.top_k) + ", intermediate " + std::to_string(m.expert_intermediate) + ")");
  return m;
}

/// Reads a quantized linear layer (name without ".weight", [out, in]) as float32: how a checkpoint
/// we or the reference wrote (auto_round / GPTQ / AWQ experts) is read back (hf_loader.hpp's).
using QuantizedLinearReader = std::function<RowMatrix(const std::string& layer, Index out, Index in)>;

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
  const std::string p = layer_prefix + (mixtral_names ? "block_sparse_moe." : "mlp.");
  auto load = [&](const std::string& name, Index rows, Index cols) {
    const std::string suffix = ".weight";
    const bool linear = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (!ckpt.contains(name) && linear && quantized) return quantized(name.substr(0, name.size() - suffix.size()), rows, cols);
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
  w.router = load(p + "gate.weight", e_count, hidden);
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
    if (mixtral_names || (m.family == "mixtral" && ckpt.contains(p + "experts.0.w1.weight"))) names[0] = "w1", names[1] = "w3", names[2] = "w2";
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
