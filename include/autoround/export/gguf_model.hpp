#pragma once
// A quantized GGUF model for llama.cpp: the source GGUF's metadata (architecture, tokenizer, ...)
// copied in order with general.file_type set, and every tensor re-encoded:
//   - norms (1-D) as F32 (F16 if the source has them so);
//   - a linear layer whose AutoRound scheme *is* the block type keeps its tuned codes and scales
//     (encode_tuned): W4G32 sym = Q4_0, W4G32 asym = Q4_1, W5G32 = Q5_0 / Q5_1, W8G32 sym = Q8_0,
//     the double-quantized k-quant schemes (DoubleQuantizer, gguf_tuning_overrides) = Q2_K..Q6_K,
//     and weight-only MXFP4 (FloatQuantizer, pack_ggml_mxfp4) = MXFP4;
//   - every other 2-D tensor is quantized from the source's float weights with llama.cpp's
//     reference quantizer (round-to-nearest);
//   - each tensor gets the block type llama-quantize gives it under the same file type
//     (gguf_mix.hpp: output Q6_K, the _m mixes' attn_v / ffn_down, the fallbacks of rows that
//     cannot hold k-quants, the 8-expert rules), so the file has llama-quantize's size to the byte;
//   - a mixture of experts' 3-D ffn_{gate,up,down}_exps hold every routed expert's tuned codes,
//     expert after expert (each expert's [rows, cols] encoded as a 2-D tensor; gemma4's fused
//     ffn_gate_up_exps each expert's gate, then its up), when every expert's scheme is the block type; the shared expert's ffn_*_shexp as 2-D layers; the
//     routers (ffn_gate_inp) are copied in the source's type, as llama-quantize leaves them;
//   - a tensor of several layers (phi3's attn_qkv and ffn_up, gguf_fused_layers) holds their
//     tuned codes one layer's rows after another, when each layer's scheme is the block type.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "../format/gguf_reader.hpp"
#include "../format/gguf_writer.hpp"
#include "../model/gguf_moe.hpp"
#include "../model/linear_slots.hpp"
#include "../pack/float_tensors.hpp"
#include "../pack/ggml_quantize.hpp"
#include "../pack/ggml_tuned_kquant.hpp"
#include "gguf_mix.hpp"
#include "quantized_llama.hpp"

namespace autoround {

/// The AutoRound scheme whose tuned weights a ggml type stores exactly, if any: the integer
/// schemes of Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, the double-quantized ones of Q2_K..Q6_K (the
/// latter need a DoubleQuantizer) and MXFP4's, weight-only (llama.cpp multiplies it with Q8_0
/// activations, not MXFP4 ones).
inline std::optional<QuantSpec> exact_spec_for(ggml::Type type) {
  using T = ggml::Type;
  switch (type) {
    case T::MXFP4: return weight_only(float_spec(FloatFormat::MxFp4));
    case T::Q4_0: return QuantSpec{4, 32, Symmetric};
    case T::Q4_1: return QuantSpec{4, 32, Asymmetric};
    case T::Q5_0: return QuantSpec{5, 32, Symmetric};
    case T::Q5_1: return QuantSpec{5, 32, Asymmetric};
    case T::Q8_0: return QuantSpec{8, 32, Symmetric};
    default: return ggml::double_quant_spec_for(type);
  }
}
inline std::optional<QuantSpec> exact_spec_for(const GgufScheme& s) { return exact_spec_for(s.base); }

/// A GGUF model's experts as llama-quantize sees them: {arch}.expert_count (0: dense) and the
/// expert and shared-expert sizes (the columns of ffn_down_exps and ffn_down_shexp).
struct GgufExperts {
  Index count = 0, intermediate = 0, shared_intermediate = 0;
};
inline GgufExperts gguf_experts(const GgufFile& file) {
  const std::string arch = file.find("general.architecture") ? file.get_string("general.architecture") : "llama";
  GgufExperts e;
  if (!file.find(arch + ".expert_count") || file.get_uint(arch + ".expert_count") <= 1) return e;
  const MoeLayout m = gguf_moe_layout(file);
  return {m.experts, m.expert_intermediate, m.shared_intermediate};
}

/// A dense block's linear layer's tensor name in GGUF: "blk.3.attn_q.weight".
inline std::string gguf_layer_name(Index block, Linear l) {
  return "blk." + std::to_string(block) + "." + std::string(gguf_name(l)) + ".weight";
}

namespace detail {
inline std::string escaped_dots(const std::string& name) {
  std::string r;
  for (char ch : name) {
    if (ch == '.') r += '\\';
    r += ch;
  }
  return r;
}
}  // namespace detail

/// Per-layer schemes that make AutoRound tune every linear layer of `model` for the block type
/// it will be stored as (as the reference tunes gguf:q4_k_m with int_asym_dq for Q4_K layers,
/// int_sym_dq for Q6_K ones, and the fallback types' schemes): one exact-name override per
/// layer (with `experts`, one per projection of the routed experts, matching every expert's
/// slot, and one per shared-expert projection). Layers whose type has no tuned encoding stay in
/// full precision while tuning. Run quantize_model with DynamicDoubleQuantizer when any of them is a k-quant.
inline std::vector<LayerOverride> gguf_tuning_overrides(const GgufScheme& scheme, const LlamaConfig& config, const GgufExperts& experts = {}) {
  std::vector<LayerOverride> overrides;
  for (Index b = 0; b < config.layers; ++b) {
    const auto tuned_for = [&](const LinearSlot& slot, const std::string& tensor, std::optional<Linear> rule, Index cols) {
      rule = gguf_rule_under(scheme.mix, rule, slot.role);
      const auto chosen = scheme.tensor_types.find("blk." + std::to_string(b) + "." + tensor + ".weight");
      const ggml::Type type = chosen != scheme.tensor_types.end() ? chosen->second
                                                                 : gguf_tensor_type(scheme, cols, b, rule, config, false, experts.count);
      overrides.push_back({"^" + detail::escaped_dots(layer_name(b, slot, config.model_type)) + "$", exact_spec_for(type)});
    };
    const LlamaConfig layer = layer_config(config, b);  // (gemma4's full layers: their own head size; E2B's double-wide MLPs)
    for (Linear l : all_linears) {
      if (l == Linear::Value && config.values_from_keys(config.is_sliding(b))) continue;  // (no v_proj)
      if ((l == Linear::Key || l == Linear::Value) && config.kv_shared(b)) continue;    // (gemma4 E2B / E4B: no k_proj / v_proj)
      const auto [tensor, rule] = gguf_tensor_of(l, config.model_type);  // phi3's fused layers: one tensor's type for each
      tuned_for(LinearSlot{l, LinearSlot::own}, tensor, rule, linear_shape(layer, l).second);
    }
    if (config.per_layer_input > 0) {  // gemma4 E2B / E4B's per-layer branch: inp_gate, proj (llama-quantize's OTHER)
      tuned_for(LinearSlot{Linear::Gate, LinearSlot::per_layer}, "inp_gate", std::nullopt, config.hidden);
      tuned_for(LinearSlot{Linear::Down, LinearSlot::per_layer}, "proj", std::nullopt, config.per_layer_input);
    }
    if (config.latent_attention() && config.q_lora_rank > 0)  // deepseek2's q_a_proj
      tuned_for(LinearSlot{Linear::Query, LinearSlot::latent}, gguf_latent_tensor, std::nullopt, config.hidden);
    if (experts.count == 0) continue;
    for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) {
      const Index cols = l == Linear::Down ? experts.intermediate : config.hidden;
      const ggml::Type type = gguf_tensor_type(scheme, cols, b, l, config, false, experts.count);
      // every routed expert's slot of this projection: model.layers.B.mlp.experts.E.gate_proj
      std::string expert_zero = detail::escaped_dots(layer_name(b, LinearSlot{l, 0}, config.model_type));
      const std::string marker = "experts\\.0\\.";
      const std::string any_expert =
          "^" + expert_zero.replace(expert_zero.find(marker), marker.size(), "experts\\.[0-9]+\\.") + "$";
      overrides.push_back({any_expert, exact_spec_for(type)});
      if (experts.shared_intermediate > 0) {
        const Index shared_cols = l == Linear::Down ? experts.shared_intermediate : config.hidden;
        const ggml::Type shared = gguf_tensor_type(scheme, shared_cols, b, l, config, false, experts.count);
        overrides.push_back({"^" + detail::escaped_dots(layer_name(b, LinearSlot{l, LinearSlot::shared}, config.model_type)) + "$",
                             exact_spec_for(shared)});
      }
    }
  }
  return overrides;
}
inline std::vector<LayerOverride> gguf_tuning_overrides(const GgufScheme& scheme, const LlamaModel& model, const GgufExperts& experts = {}) {
  return gguf_tuning_overrides(scheme, model.config, experts);
}

/// Whether any of those schemes needs double quantization (a DoubleQuantizer).
inline bool needs_double_quant(const std::vector<LayerOverride>& overrides) {
  return std::any_of(overrides.begin(), overrides.end(), [](const LayerOverride& o) { return o.spec && o.spec->super_group_size > 0; });
}

/// The type source tensor `t` is written as under `scheme`: the scheme's own choice for it
/// (tensor_types) if any, else llama-quantize's rule; norms F32 (F16 if the source has them so),
/// routers copied in their type.
inline ggml::Type gguf_output_type(const GgufFile& source, const GgufTensor& t, const GgufScheme& scheme, const LlamaConfig& config,
                                   const GgufExperts& experts) {
  const GgufTensorSite site = gguf_tensor_site(t.name);
  if (site.keep_type || t.name == "per_layer_model_proj.weight") return t.type;  // a router, gemma4's per-layer projection: as they are
  if (const auto chosen = scheme.tensor_types.find(t.name); chosen != scheme.tensor_types.end()) return chosen->second;
  // norms, whatever their shape (llama-quantize: 1-D tensors and every *_norm.weight), as F32 (F16 if so in the source),
  // and, as llama-quantize quantizes only "*weight" tensors, biases too (gpt-oss's ffn_*_exps.bias are 2-D)
  const auto ends_with = [&](const std::string& tail) { return t.name.size() >= tail.size() && t.name.compare(t.name.size() - tail.size(), tail.size(), tail) == 0; };
  if (t.dims.size() < 2 || ends_with("_norm.weight") || !ends_with("weight")) return t.type == ggml::Type::F16 ? ggml::Type::F16 : ggml::Type::F32;
  // (llama-quantize: gemma4's per-layer table is a token embedding too, typed as the output where that is tied)
  const bool is_output = t.name == "output.weight" ||
                         ((t.name == "token_embd.weight" || t.name == "per_layer_token_embd.weight") && !source.find_tensor("output.weight"));
  return gguf_tensor_type(scheme, t.cols(), site.block, site.rule(scheme.mix), config, is_output, experts.count);
}

/// How each tensor of an export was stored: for the report and the tests.
struct GgufTensorChoice {
  std::string name;
  ggml::Type type;
  bool tuned = false;  ///< AutoRound's codes and scales, unchanged
  bool from_tuned_values = false;  ///< re-quantized from the tuned layer's values (deepseek2's attn_k_b: kv_b's key rows transposed)
};

/// A GGUF file written as the blocks of a model are quantized (quantize_model_streaming's sink;
/// export_gguf_model uses it too): every tensor's type is known up front (gguf_mix.hpp), so the
/// header is written first and the tensors follow in the source file's order; a tensor of block b
/// is written once add_block(b) has been called, every other tensor (embedding, norms of the
/// head, the LM head) is re-quantized from the source when its turn comes. A finished block whose
/// tensors cannot be written yet (a source that does not list its blocks in order) is held
/// encoded until they can. The file is `path.tmp` until finish() renames it.
template <WeightQuantizer Q = DynamicIntQuantizer>
class GgufBlockWriter {
 public:
  GgufBlockWriter(const GgufFile& source, const GgufScheme& scheme, const LlamaConfig& config, const std::filesystem::path& path)
      : source_(source), header_(source.find("general.alignment") ? source.get_uint("general.alignment") : 32),
        experts_(gguf_experts(source)), arch_(source.find("general.architecture") ? source.get_string("general.architecture") : "llama"),
        config_(config) {
    for (const std::string& key : source.metadata_order()) header_.set(key, source.metadata().at(key));
    header_.set_u32("general.file_type", scheme.file_type);
    header_.set_u32("general.quantization_version", 2);
    for (const GgufTensor& t : source.tensors()) {
      const ggml::Type type = gguf_output_type(source, t, scheme, config, experts_);
      header_.declare_tensor(t.name, t.dims, type);
      choices_.push_back({t.name, type});
      sites_.push_back(gguf_tensor_site(t.name));
    }
    encoded_.resize(choices_.size());
    finished_.assign(static_cast<std::size_t>(config.layers), false);
    stream_.emplace(path, header_);
    pump();
  }
  GgufBlockWriter(const GgufBlockWriter&) = delete;  // the stream refers to header_
  GgufBlockWriter& operator=(const GgufBlockWriter&) = delete;

  /// Block b's tuned layers (per linear slot, model/linear_slots.hpp): those whose type stores
  /// their scheme exactly keep their codes and scales; an experts' tensor when every expert's does.
  void add_block(Index b, const LayerResults<Q>& results) {
    detail::require(b >= 0 && b < static_cast<Index>(finished_.size()) && !finished_[static_cast<std::size_t>(b)],
                    stream_->path().string() + ": block " + std::to_string(b) + " given twice or out of range");
    // a dense block's slots are the seven Linear; a MoE block's its attention's four, then three per routed expert, then the shared
    // expert's; a latent attention's q_a_proj last (linear_slots)
    const bool latent = config_.latent_attention() && config_.q_lora_rank > 0 && !results.empty();
    const std::size_t per_layer = config_.per_layer_input > 0 && !results.empty() ? 2 : 0;  // gemma4 E2B / E4B: inp_gate, proj last
    const std::size_t own = results.size() - (latent ? 1 : 0) - per_layer;
    const bool moe = own > all_linears.size();
    // gemma4's experts run beside the dense MLP: its three slots stay, the experts' come after them (first_expert_slot)
    const bool beside = moe && arch_ == "gemma4";
    const std::size_t first = first_expert_slot(config_.values_from_keys(config_.is_sliding(b)), beside);
    if (moe)
      detail::require(own == expert_slot_index(experts_.count, Linear::Gate, first) || own == expert_slot_index(experts_.count + 1, Linear::Gate, first),
                      stream_->path().string() + ": block " + std::to_string(b) + ": " + std::to_string(results.size()) +
                          " results for a block of " + std::to_string(experts_.count) + " experts");
    for (std::size_t i = 0; i < choices_.size(); ++i) {
      const GgufTensorSite& site = sites_[i];
      if (!site.block || *site.block != b || !site.linear || site.keep_type || source_.tensors()[i].dims.size() < 2) continue;
      const Linear l = *site.linear;
      std::vector<const QuantizedWeight<Q>*> parts;  // the slots this tensor holds, in its row order
      std::optional<QuantizedWeight<Q>> rows;         // deepseek2's attn_v_b: kv_b's value rows
      if (site.latent)
        parts.push_back(latent ? as_pointer(result_at(results, results.size() - 1)) : nullptr);
      else if (site.per_layer)
        parts.push_back(per_layer ? as_pointer(result_at(results, results.size() - (l == Linear::Gate ? 2 : 1))) : nullptr);
      else if (site.part != GgufTensorSite::Part::Whole) {
        const QuantizedWeight<Q>* kv_b = as_pointer(result_at(results, static_cast<std::size_t>(Linear::Value)));
        if (!kv_b) continue;  // not quantized: from the source
        if (site.part == GgufTensorSite::Part::KeyRows) {  // transposed per head: no tuned code fits; from the tuned values
          encoded_[i] = requantize_key_rows(*kv_b, choices_[i].type);
          choices_[i].from_tuned_values = true;
          continue;
        }
        rows = kv_b_value_rows(*kv_b, choices_[i].name);
        parts.push_back(&*rows);
      } else if (site.owner == GgufTensorSite::Owner::Experts) {
        for (Index e = 0; e < experts_.count; ++e)
          for (Linear role : site.gate_up ? std::vector<Linear>{Linear::Gate, Linear::Up} : std::vector<Linear>{l})
            parts.push_back(moe ? as_pointer(result_at(results, expert_slot_index(e, role, first))) : nullptr);
      } else if (site.owner == GgufTensorSite::Owner::SharedExpert)
        parts.push_back(moe ? as_pointer(result_at(results, expert_slot_index(experts_.count, l, first))) : nullptr);
      else if (const std::vector<Linear> fused = gguf_fused_layers(choices_[i].name, arch_); !fused.empty())
        for (Linear f : fused) parts.push_back(moe && f >= Linear::Gate ? nullptr : as_pointer(result_at(results, static_cast<std::size_t>(f))));
      else if (const auto slot = own_slot_index(l, config_.values_from_keys(config_.is_sliding(b)), config_.kv_shared(b)))
        parts.push_back(moe && !beside && static_cast<int>(l) >= static_cast<int>(Linear::Gate) ? nullptr : as_pointer(result_at(results, *slot)));
      else
        parts.push_back(nullptr);  // (no such slot: from the source)
      const bool exact = std::all_of(parts.begin(), parts.end(), [&](const QuantizedWeight<Q>* q) {
        return q && exact_spec_for(choices_[i].type) == q->quantizer.spec();
      });
      if (!exact) continue;
      const std::string& name = choices_[i].name;
      std::vector<std::byte> bytes;
      for (const QuantizedWeight<Q>* tuned : parts) {
        const std::vector<std::byte> part = [&] {
          if constexpr (FloatCodeQuantizer<Q>) {  // a FloatQuantizer: MXFP4's blocks
            const std::vector<std::uint8_t> blocks = pack_ggml_mxfp4(*tuned, name);
            const auto* first = reinterpret_cast<const std::byte*>(blocks.data());
            return std::vector<std::byte>(first, first + blocks.size());
          } else {
            if constexpr (SuperGroupQuantizer<Q>)
              if (tuned->quantizer.double_quantized()) return ggml::encode_tuned(choices_[i].type, double_quant_view(*tuned), name);
            return ggml::encode_tuned(choices_[i].type, int_view(*tuned), name);
          }
        }();
        bytes.insert(bytes.end(), part.begin(), part.end());
      }
      detail::require(bytes.size() == source_.tensors()[i].element_count / static_cast<std::uint64_t>(ggml::traits(choices_[i].type).block_weights) *
                                          ggml::traits(choices_[i].type).block_bytes,
                      name + ": the tuned layers do not fill the tensor (" + std::to_string(parts.size()) + " parts)");
      encoded_[i] = std::move(bytes);
      choices_[i].tuned = true;
    }
    finished_[static_cast<std::size_t>(b)] = true;
    pump();
  }

  /// Write what remains and rename the file into place; how each tensor was stored.
  std::vector<GgufTensorChoice> finish() {
    pump();
    detail::require(next_ == choices_.size(), stream_->path().string() + ": tensor '" +
                                                  (next_ < choices_.size() ? choices_[next_].name : std::string()) +
                                                  "' is still waiting for its block");
    stream_->finish();
    return choices_;
  }

 private:
  void pump() {
    for (; next_ < choices_.size(); ++next_) {
      const auto& block = sites_[next_].block;
      if (block && *block < static_cast<Index>(finished_.size()) && !finished_[static_cast<std::size_t>(*block)]) return;
      const GgufTensor& t = source_.tensors()[next_];
      if (encoded_[next_]) {
        stream_->write(t.name, *encoded_[next_]);
        encoded_[next_].reset();
        continue;
      }
      if (sites_[next_].keep_type) {  // a router: its bytes as they are
        stream_->write(t.name, t.data);
        continue;
      }
      // the source's float values, dequantized only for the tensors that are re-quantized from them
      const RowMatrix x = source_.to_float(t);
      source_.release(t);
      stream_->write(t.name, ggml::quantize(choices_[next_].type, std::span<const float>(x.data(), static_cast<std::size_t>(x.size()))));
    }
  }

  const GgufFile& source_;
  GgufWriter header_;
  std::vector<GgufTensorChoice> choices_;
  static const QuantizedWeight<Q>* as_pointer(const std::optional<QuantizedWeight<Q>>& q) { return q ? &*q : nullptr; }

  // deepseek2 splits kv_b_proj [heads·(qk_nope + v_head), kv_lora] per head: attn_v_b holds each
  // head's value rows as they are (ne {kv_lora, v_head, heads}: tuned codes fit), attn_k_b its key
  // rows transposed (ne {qk_nope, kv_lora, heads}: groups would run across kv_b's groups, so it is
  // quantized from the tuned layer's values, as the reference's GGUF export recomputes it)
  QuantizedWeight<Q> kv_b_value_rows(const QuantizedWeight<Q>& kv_b, const std::string& name) const {
    const Index dn = config_.qk_nope_dim, dv = config_.v_head_dim;
    std::vector<std::pair<Index, Index>> ranges;
    for (Index h = 0; h < config_.heads; ++h) ranges.push_back({h * (dn + dv) + dn, dv});
    return gather_rows(kv_b, ranges, name);
  }
  std::vector<std::byte> requantize_key_rows(const QuantizedWeight<Q>& kv_b, ggml::Type type) const {
    const Index dn = config_.qk_nope_dim, dv = config_.v_head_dim, rank = config_.kv_lora_rank;
    const RowMatrix w = kv_b.dequantize();
    RowMatrix k_b(config_.heads * rank, dn);
    for (Index h = 0; h < config_.heads; ++h) k_b.middleRows(h * rank, rank) = w.middleRows(h * (dn + dv), dn).transpose();
    return ggml::quantize(type, std::span<const float>(k_b.data(), static_cast<std::size_t>(k_b.size())));
  }

  GgufExperts experts_;
  std::string arch_;
  LlamaConfig config_;
  std::vector<GgufTensorSite> sites_;
  std::vector<std::optional<std::vector<std::byte>>> encoded_;
  std::vector<bool> finished_;
  std::optional<GgufStreamWriter> stream_;
  std::size_t next_ = 0;
};

/// The whole quantized model to `path` (GgufBlockWriter, block after block). Blocks past the end
/// of q.layers (or with empty results) are written from the source.
template <WeightQuantizer Q>
std::vector<GgufTensorChoice> export_gguf_model(const QuantizedLlama<Q>& q, const GgufFile& source, const GgufScheme& scheme,
                                                const std::filesystem::path& path) {
  GgufBlockWriter<Q> writer(source, scheme, q.model.config, path);
  for (Index b = 0; b < q.model.config.layers; ++b)  // blocks without results: every tensor from the source
    writer.add_block(b, b < static_cast<Index>(q.layers.size()) ? q.layers[static_cast<std::size_t>(b)] : LayerResults<Q>{});
  return writer.finish();
}

}  // namespace autoround
