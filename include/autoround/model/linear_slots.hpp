#pragma once
// A block's quantizable linear layers as a list of slots: what the tuning runs, the results, the
// checkpoints and the exports walk instead of a fixed array of seven. A dense block has the seven
// Linear in order (slot i is Linear i; a Gemma 4 full layer without v_proj has six, no Value); a
// mixture-of-experts block has its attention's four (q, k, v, o: slots 0-3, as in a dense block),
// with experts beside a dense MLP (Gemma 4's 26B-A4B) the MLP's three, then each routed expert's
// gate, up and down, then the shared expert's (first_expert_slot, expert_slot_index). The router and the shared expert's gate are not slots: the reference keeps
// them in full precision (docs/block-descriptions.md). A latent-attention block (DeepSeek-V3) has
// one more, q_a_proj, last (so that the others keep their places). Gemma 4 E2B / E4B: a kv-shared
// layer has no Key and Value slots; the per-layer branch's gate and projection come last.
#include <optional>
#include <string>
#include <vector>

#include "llama_model.hpp"

namespace autoround {

/// One linear layer of a block: its role and whose it is.
struct LinearSlot {
  static constexpr Index own = -1;     ///< the block's attention or dense MLP
  static constexpr Index shared = -2;  ///< the MoE's shared expert
  static constexpr Index latent = -3;  ///< a latent attention's query compression q_a_proj (role Query)
  static constexpr Index per_layer = -4;  ///< Gemma 4 E2B / E4B's per-layer branch: its gate (role Gate) and projection (role Down)
  Linear role = Linear::Query;         ///< an expert's layers are Gate, Up or Down
  Index expert = own;                  ///< own, shared, or the routed expert's index
  bool routed() const { return expert >= 0; }
  /// A routed or the shared expert's layer (held in the MoE's weights, not the block's own).
  bool of_expert() const { return expert >= 0 || expert == shared; }
  friend bool operator==(const LinearSlot&, const LinearSlot&) = default;
};

/// The slots of `block`, in the order above.
inline std::vector<LinearSlot> linear_slots(const LlamaBlock& block) {
  std::vector<LinearSlot> slots;
  const auto attention = [&] {  // (Gemma 4's full layers without v_proj: no Value slot)
    for (Linear l : {Linear::Query, Linear::Key, Linear::Value, Linear::Output})
      if ((l != Linear::Value || !block.values_from_keys) && ((l != Linear::Key && l != Linear::Value) || !block.kv_shared))
        slots.push_back({l, LinearSlot::own});
  };
  attention();
  if (!block.moe || block.moe->beside_mlp)  // a dense MLP (Gemma 4's 26B-A4B: and its experts beside it)
    for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) slots.push_back({l, LinearSlot::own});
  if (block.moe) {
    const auto experts = static_cast<Index>(block.moe->weights.experts.size());
    for (Index e = 0; e < experts; ++e)
      for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) slots.push_back({l, e});
    if (block.moe->weights.shared)
      for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) slots.push_back({l, LinearSlot::shared});
  }
  // (by its norm: a streaming run's sink gets the block with its quantized weights released)
  if (block.mla && block.mla->query_a_norm.size() > 0) slots.push_back({Linear::Query, LinearSlot::latent});
  if (block.per_layer) slots.push_back({Linear::Gate, LinearSlot::per_layer}), slots.push_back({Linear::Down, LinearSlot::per_layer});
  return slots;
}

/// Where a block's own linear `l` (attention, or a dense MLP's) sits in linear_slots: l's index,
/// one less past Value in a block without v_proj (`values_from_keys`: Gemma 4's full layers),
/// nullopt for Value there.
inline std::optional<std::size_t> own_slot_index(Linear l, bool values_from_keys, bool kv_shared = false) {
  if (kv_shared) {  // Gemma 4's kv-shared layers: no Key, no Value
    if (l == Linear::Key || l == Linear::Value) return std::nullopt;
    return l == Linear::Query ? std::size_t{0} : static_cast<std::size_t>(l) - 2;
  }
  if (!values_from_keys || l < Linear::Value) return static_cast<std::size_t>(l);
  if (l == Linear::Value) return std::nullopt;
  return static_cast<std::size_t>(l) - 1;
}

/// An expert's projection as an index: gate 0, up 1, down 2 (moe_backward's gradient triples).
inline std::size_t projection_index(Linear role) {
  return static_cast<std::size_t>(role) - static_cast<std::size_t>(Linear::Gate);
}

/// Where a MoE block's first expert slot sits: after the attention's (four, three without v_proj)
/// and, with experts beside a dense MLP (Gemma 4), the MLP's three.
inline std::size_t first_expert_slot(bool values_from_keys, bool beside_mlp) {
  return (values_from_keys ? 3 : 4) + (beside_mlp ? 3 : 0);
}
inline std::size_t first_expert_slot(const LlamaBlock& block) {
  return first_expert_slot(block.values_from_keys, block.moe && block.moe->beside_mlp);
}

/// Where routed expert `expert`'s projection `role` sits in a MoE block's slots (linear_slots), the
/// experts starting at slot `first` (first_expert_slot); `expert` = the expert count gives the
/// shared expert's.
inline std::size_t expert_slot_index(Index expert, Linear role, std::size_t first = 4) {
  return first + 3 * static_cast<std::size_t>(expert) + projection_index(role);
}

namespace detail {
template <class Ffn>
auto& expert_weight_of(Ffn& moe, const LinearSlot& s) {
  auto& expert = s.expert == LinearSlot::shared ? moe.weights.shared.value() : moe.weights.experts.at(static_cast<std::size_t>(s.expert));
  return s.role == Linear::Gate ? expert.gate : s.role == Linear::Up ? expert.up : expert.down;
}
template <class Block>
auto& slot_weight_of(Block& block, const LinearSlot& s) {
  if (s.expert == LinearSlot::own) return block[s.role];
  if (s.expert == LinearSlot::latent) return block.mla.value().query_a;
  if (s.expert == LinearSlot::per_layer) return s.role == Linear::Gate ? block.per_layer.value().gate : block.per_layer.value().projection;
  return expert_weight_of(block.moe.value(), s);
}
}  // namespace detail

/// The slot's weight [out, in] in `block`.
inline const RowMatrix& slot_weight(const LlamaBlock& block, const LinearSlot& s) { return detail::slot_weight_of(block, s); }
inline RowMatrix& slot_weight(LlamaBlock& block, const LinearSlot& s) { return detail::slot_weight_of(block, s); }
/// An expert slot's weight in a mixture of experts (a block's, or a working copy of it).
inline RowMatrix& expert_weight(MoeFeedForward& moe, const LinearSlot& s) { return detail::expert_weight_of(moe, s); }

/// The slot's Hugging Face name within its layer, as transformers names the unfused module (and
/// the reference exports it): "self_attn.q_proj", "mlp.down_proj", "mlp.experts.3.gate_proj",
/// "mlp.shared_expert.up_proj" ("mlp.shared_experts." for DeepSeek-V3, `model_type`; its latent
/// attention's "self_attn.q_a_proj", "self_attn.q_b_proj", ...; Gemma 4's "experts.3.gate_proj").
inline std::string hf_name(const LinearSlot& s, const std::string& model_type = {}) {
  if (s.expert == LinearSlot::latent) return "self_attn.q_a_proj";
  if (s.expert == LinearSlot::per_layer) return s.role == Linear::Gate ? "per_layer_input_gate" : "per_layer_projection";
  if (s.expert == LinearSlot::own) return hf_name(s.role, model_type);
  const char* projection = s.role == Linear::Gate ? "gate_proj" : s.role == Linear::Up ? "up_proj" : "down_proj";
  if (s.expert == LinearSlot::shared) return std::string(model_type == "deepseek_v3" || model_type == "deepseek2" || model_type == "glm4_moe" ? "mlp.shared_experts." : "mlp.shared_expert.") + projection;
  // (Gemma 4's experts sit beside the MLP, not in it: "experts.E.gate_proj")
  const bool beside = model_type == "gemma4_text" || model_type == "gemma4";  // (read from Hugging Face or GGUF)
  // Mixtral: the reference saves its unfused experts under the checkpoint's block_sparse_moe (transformers 5's
  // in-memory "mlp", renamed back on save), projections named gate_proj / up_proj / down_proj (not w1 / w3 / w2)
  const char* moe = beside ? "experts." : model_type == "mixtral" ? "block_sparse_moe.experts." : "mlp.experts.";
  return std::string(moe) + std::to_string(s.expert) + "." + projection;
}

}  // namespace autoround
