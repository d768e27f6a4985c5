#pragma once
// The mixture-of-experts feed-forward of a llama.cpp GGUF file: its layout from the metadata and
// a layer's router and experts in float32 (any tensor type the reader dequantizes), for
// model/moe_mlp.hpp. llama.cpp keeps all of a layer's experts in one 3-D tensor per projection:
//   blk.N.ffn_gate_inp.weight   ne {hidden, experts}                  the router, never quantized
//   blk.N.ffn_gate_exps.weight  ne {hidden, expert_ff, experts}       expert e's gate: rows e·I ..
//   blk.N.ffn_up_exps.weight    ne {hidden, expert_ff, experts}
//   blk.N.ffn_down_exps.weight  ne {expert_ff, hidden, experts}       expert e's down: rows e·H ..
//   qwen2moe also: ffn_{gate,up,down}_shexp (the shared expert), ffn_gate_inp_shexp (its gate)
//   glm4moe also: ffn_{gate,up,down}_shexp (ungated, expert_shared_count experts wide) and
//                 exp_probs_b.bias (the choice's correction bias)
// glm4moe (GLM-4.5) routes as DeepSeek-V3 (build_moe_ffn with expert_gating_func 2 = sigmoid,
// exp_probs_b, expert_group_count / expert_group_used_count, expert_weights_norm and
// expert_weights_scale), its first leading_dense_block_count blocks dense, and its
// nextn_predict_layers MTP blocks after the others (llama.cpp runs them only to draft: not read).
// gpt-oss (GPT-OSS) also: ffn_gate_inp.bias and ffn_{gate,up,down}_exps.bias (ne {I or H, experts}),
// routed as top-k of the biased logits with a softmax over the k, experts through swiglu_oai
// (min(g, 7) σ(1.702 min(g, 7)) (clamp(u, ±7) + 1)); its experts may be MXFP4 as released.
// deepseek2 (DeepSeek-V3) routes as glm4moe; a file without expert_gating_func is DeepSeek-V2's
// softmax to llama.cpp, which is refused here.
// gemma4 (Gemma 4 26B-A4B): its experts beside each dense MLP (model/gguf_source.hpp reads the
// norms and ffn_gate_inp.scale); the fused blk.N.ffn_gate_up_exps.weight ne {hidden, 2·expert_ff,
// experts} (each expert's gate rows, then its up rows; separate gate/up tensors load too) and
// ffn_down_exps.scale ne {experts} (router.per_expert_scale: llama.cpp multiplies each expert's
// output, the same as its routing weight); softmax, top-k renormalized, GeGLU.
// Architectures: qwen3moe, qwen2moe, glm4moe, deepseek2, and llama with {arch}.expert_count > 0 (Mixtral). Routing is
// llama.cpp's graphs (src/models/*.cpp, build_moe_ffn's norm_w): softmax over the experts, top-k,
// the chosen weights renormalized for qwen3moe and llama (Mixtral), not for qwen2moe; these graphs
// read no {arch}.expert_weights_norm, so neither do we. (Found by llama-perplexity:
// scripts/moe-llama-check.sh's qwen2moe model scored 8% apart while we renormalized it.) Expert size: {arch}.expert_feed_forward_length,
// else {arch}.feed_forward_length (Mixtral's is the per-expert size).
#include <algorithm>
#include <string>

#include "../core/error.hpp"
#include "../format/gguf_reader.hpp"
#include "hf_moe.hpp"
#include "moe_mlp.hpp"

namespace autoround {

/// Blocks of a GGUF file's forward: {arch}.block_count less glm4moe's MTP blocks.
inline Index gguf_forward_blocks(const GgufFile& file, const std::string& arch) {
  const auto all = static_cast<Index>(file.get_uint(arch + ".block_count"));
  const std::string nextn = arch + ".nextn_predict_layers";
  const Index mtp = file.find(nextn) ? static_cast<Index>(file.get_uint(nextn)) : 0;
  detail::require(mtp >= 0 && mtp < all, file.path() + ": " + nextn + " is not below block_count");
  return all - mtp;
}

/// The MoE layout of a GGUF file's metadata (every layer sparse but glm4moe's leading dense ones).
inline MoeLayout gguf_moe_layout(const GgufFile& file) {
  const std::string arch = file.get_string("general.architecture");
  MoeLayout m;
  m.family = arch;
  if (arch != "qwen3moe" && arch != "qwen2moe" && arch != "glm4moe" && arch != "gpt-oss" && arch != "deepseek2" && arch != "llama" &&
      arch != "gemma4")
    throw Error(file.path() + ": architecture '" + arch +
                "' has no mixture-of-experts layout here (qwen3moe, qwen2moe, glm4moe, gpt-oss, deepseek2, gemma4, llama with experts)");
  if (!file.find(arch + ".expert_count") || file.get_uint(arch + ".expert_count") == 0)
    throw Error(file.path() + ": " + arch + ".expert_count is missing or 0: not a mixture-of-experts model");
  m.experts = static_cast<Index>(file.get_uint(arch + ".expert_count"));
  m.spec.top_k = static_cast<Index>(file.get_uint(arch + ".expert_used_count"));
  m.expert_intermediate = static_cast<Index>(file.find(arch + ".expert_feed_forward_length") ? file.get_uint(arch + ".expert_feed_forward_length")
                                                                                            : file.get_uint(arch + ".feed_forward_length"));
  m.spec.normalize = arch != "qwen2moe";
  if (arch == "gpt-oss") {  // build_moe_ffn: top-k of the biased logits, softmax over those k; swiglu_oai(1.702, 7)
    m.spec.scoring = RouterScoring::TopKSoftmax;
    m.spec.activation = ExpertActivation::ClampedSwiGlu;
    m.spec.normalize = false;
  }
  if (arch == "qwen2moe" && file.find(arch + ".expert_shared_feed_forward_length")) {
    m.shared_intermediate = static_cast<Index>(file.get_uint(arch + ".expert_shared_feed_forward_length"));
    m.shared_gate = true;
  }
  m.sparse.assign(static_cast<std::size_t>(gguf_forward_blocks(file, arch)), true);
  if (arch == "gemma4") {  // experts beside the dense MLP, GeGLU; llama.cpp's graph: a layer with ffn_gate_inp has them
    m.spec.activation = ExpertActivation::GeGlu;
    for (std::size_t i = 0; i < m.sparse.size(); ++i) m.sparse[i] = file.find_tensor("blk." + std::to_string(i) + ".ffn_gate_inp.weight") != nullptr;
    detail::require(std::find(m.sparse.begin(), m.sparse.end(), true) != m.sparse.end(),
                    file.path() + ": gemma4.expert_count > 0 but no layer has its router (ffn_gate_inp)");
  }
  if (arch == "glm4moe" || arch == "deepseek2") {  // DeepSeek-V3's routing (deepseek2 without the gating key: llama.cpp's softmax, V2's)
    const auto number = [&](const std::string& key, double fallback) { return file.find(key) ? file.get_float(key) : fallback; };
    const auto count = [&](const std::string& key, Index fallback) { return file.find(key) ? static_cast<Index>(file.get_uint(key)) : fallback; };
    const Index gating = count(arch + ".expert_gating_func", arch == "deepseek2" ? 1 : 2);
    if (gating != 2) throw Error(file.path() + ": " + arch + ".expert_gating_func " + std::to_string(gating) + " is not supported (2: sigmoid)");
    m.spec.scoring = RouterScoring::SigmoidGrouped;
    m.spec.normalize = file.find(arch + ".expert_weights_norm") && file.get_bool(arch + ".expert_weights_norm");
    const double scale = number(arch + ".expert_weights_scale", 0.0);  // llama.cpp: 0 (absent) means none
    m.spec.scale = scale == 0.0 ? 1.0f : static_cast<float>(scale);
    m.spec.groups = std::max<Index>(1, count(arch + ".expert_group_count", 1));
    m.spec.top_groups = m.spec.groups > 1 ? count(arch + ".expert_group_used_count", 1) : 1;
    m.shared_intermediate = count(arch + ".expert_shared_count", 0) * m.expert_intermediate;
    const Index dense = count(arch + ".leading_dense_block_count", 0);
    for (Index i = 0; i < std::min<Index>(dense, static_cast<Index>(m.sparse.size())); ++i) m.sparse[static_cast<std::size_t>(i)] = false;
    detail::require(m.experts % m.spec.groups == 0 && m.spec.top_groups >= 1 && m.spec.top_groups <= m.spec.groups &&
                        m.spec.top_k <= m.spec.top_groups * (m.experts / m.spec.groups),
                    file.path() + ": expert groups that do not divide the experts or kept groups that hold fewer than the used experts");
  }
  detail::require(m.spec.top_k >= 1 && m.spec.top_k <= m.experts && m.expert_intermediate > 0,
                  file.path() + ": inconsistent expert metadata (" + std::to_string(m.experts) + " experts, " + std::to_string(m.spec.top_k) +
                      " used, expert size " + std::to_string(m.expert_intermediate) + ")");
  return m;
}

/// Layer `layer`'s MoE weights in float32; shapes checked against the layout, errors name the tensor.
inline MoeWeights load_gguf_moe(const GgufFile& file, const MoeLayout& m, Index layer, Index hidden) {
  detail::require(layer >= 0 && layer < static_cast<Index>(m.sparse.size()), file.path() + ": no block " + std::to_string(layer));
  const std::string p = "blk." + std::to_string(layer) + ".";
  // shapes compared as llama.cpp's loader does: trailing 1s do not count (its converter writes
  // qwen2moe's shared-expert gate as ne {hidden, 1})
  const auto trimmed = [](std::vector<std::uint64_t> d) {
    while (d.size() > 1 && d.back() == 1) d.pop_back();
    return d;
  };
  auto load = [&](const std::string& name, std::initializer_list<std::uint64_t> dims) {
    const GgufTensor& t = file.tensor(name);
    if (trimmed(t.dims) != trimmed(std::vector<std::uint64_t>(dims))) {
      std::string have, want;
      for (auto d : t.dims) have += (have.empty() ? "" : ", ") + std::to_string(d);
      for (auto d : dims) want += (want.empty() ? "" : ", ") + std::to_string(d);
      throw Error(file.path() + ": tensor '" + name + "' has ne {" + have + "}, expected {" + want + "}");
    }
    RowMatrix w = file.to_float(t);
    file.release(t);
    return w;
  };
  const auto H = static_cast<std::uint64_t>(hidden), I = static_cast<std::uint64_t>(m.expert_intermediate),
             E = static_cast<std::uint64_t>(m.experts);
  MoeWeights w;
  w.router = load(p + "ffn_gate_inp.weight", {H, E});
  const bool biased = m.family == "gpt-oss";  // the router's and every expert projection's biases
  if (biased) w.router_bias = load(p + "ffn_gate_inp.bias", {E}).row(0).transpose();
  if (m.spec.scoring == RouterScoring::SigmoidGrouped && file.find_tensor(p + "exp_probs_b.bias"))
    w.correction_bias = load(p + "exp_probs_b.bias", {E}).row(0).transpose();
  const Index inter = m.expert_intermediate;
  const RowMatrix down = load(p + "ffn_down_exps.weight", {I, H, E});
  if (file.find_tensor(p + "ffn_gate_up_exps.weight")) {  // gemma4's converter: ne {H, 2I, E}, each expert's gate rows, then its up rows
    const RowMatrix gate_up = load(p + "ffn_gate_up_exps.weight", {H, 2 * I, E});
    for (Index e = 0; e < m.experts; ++e)
      w.experts.push_back({gate_up.middleRows(e * 2 * inter, inter), gate_up.middleRows(e * 2 * inter + inter, inter),
                           down.middleRows(e * hidden, hidden), {}, {}, {}});
  } else {
    const RowMatrix gate = load(p + "ffn_gate_exps.weight", {H, I, E}), up = load(p + "ffn_up_exps.weight", {H, I, E});
    for (Index e = 0; e < m.experts; ++e)
      w.experts.push_back({gate.middleRows(e * inter, inter), up.middleRows(e * inter, inter), down.middleRows(e * hidden, hidden), {}, {}, {}});
  }
  if (m.family == "gemma4" && file.find_tensor(p + "ffn_down_exps.scale"))  // router.per_expert_scale: each expert's output × it
    w.expert_scale = load(p + "ffn_down_exps.scale", {E}).row(0).transpose();
  if (biased) {  // ne {I, E} / {H, E}: expert e's bias is row e
    const RowMatrix gate_bias = load(p + "ffn_gate_exps.bias", {I, E}), up_bias = load(p + "ffn_up_exps.bias", {I, E});
    const RowMatrix down_bias = load(p + "ffn_down_exps.bias", {H, E});
    for (Index e = 0; e < m.experts; ++e) {
      ExpertWeights& x = w.experts[static_cast<std::size_t>(e)];
      x.gate_bias = gate_bias.row(e).transpose(), x.up_bias = up_bias.row(e).transpose(), x.down_bias = down_bias.row(e).transpose();
    }
  }
  if (m.shared_intermediate > 0) {
    const auto S = static_cast<std::uint64_t>(m.shared_intermediate);
    w.shared = ExpertWeights{load(p + "ffn_gate_shexp.weight", {H, S}), load(p + "ffn_up_shexp.weight", {H, S}),
                             load(p + "ffn_down_shexp.weight", {S, H}), {}, {}, {}};
    if (m.shared_gate) w.shared_gate = load(p + "ffn_gate_inp_shexp.weight", {H}).row(0).transpose();
  }
  return w;
}

}  // namespace autoround
