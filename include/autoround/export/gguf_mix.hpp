#pragma once
// llama.cpp's GGUF file types ("mixes": Q4_K_M, Q3_K_S, ...) and the block type llama-quantize
// gives each tensor of a LLaMA-family model (dense, or with experts) under them, so that a file we write holds
// exactly llama-quantize's types, hence its size to the byte (tests/test_gguf_mix.cpp checks both
// against files llama-quantize itself wrote: scripts/make_llama_quantize_fixture.sh).
//
// Transcribed from the rules of llama_tensor_get_type (src/llama-quant.cpp of the llama.cpp copy
// vendored in llama-cpp-python 0.3.36), without an importance matrix:
//   - output.weight (token_embd.weight when the embeddings are tied): Q6_K; Q8_0 for Q8_0 files
//     or when its rows are not a multiple of the base type's block;
//   - attn_v, ffn_down and attn_output get more bits in some mixes (gguf_tensor_type below);
//   - llama-quantize counts attn_v / ffn_down tensors as it visits them, in layer order (its
//     weights map compares the numbers of blk.N numerically), so its "first eighth of the
//     layers" and use_more_bits() are by layer number for a dense model (attn_v's: by the number
//     of attn_v tensors, fewer than the layers in gemma4, whose full layers may have none);
//   - rows that are not a multiple of 256 cannot hold k-quants: Q2_K / Q3_K -> Q4_0, Q4_K -> Q5_0,
//     Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 when not even a multiple of 32.
// Experts ({arch}.expert_count > 1): the 3-D ffn_{gate,up,down}_exps (every routed expert of a
// layer) and the shared expert's ffn_*_shexp follow ffn_gate/up/down's rules by their name, the
// layer read from the name (gemma4's fused ffn_gate_up_exps: ffn_gate's, by its name); with exactly 8 experts (Mixtral) attn_k and attn_v are Q8_0 and
// attn_output Q5_K in the Q2_K, Q3_K_S, Q3_K_M, Q4_K_S and Q4_K_M mixes (and nothing else);
// routers (ffn_gate_inp) are never quantized: they keep the source's type.
// MXFP4 (gguf:mxfp4): llama-quantize's MXFP4_MOE file type (output and every other 2-D tensor
// Q8_0, the experts' 3-D tensors MXFP4) with every block's linear layers in MXFP4 too, as
// `--tensor-type 'attn_(q|k|v|output)=mxfp4' --tensor-type 'ffn_(gate|up|down)=mxfp4'` give them
// (MXFP4_MOE alone leaves a dense model's linears in Q8_0); the patterns match anywhere in a name
// (std::regex_search), so deepseek2's attn_q_a, attn_q_b, attn_kv_a_mqa, attn_k_b and attn_v_b too.
// Not reproduced: --imatrix's Q4_0/Q5_0 ffn_down rule, --pure.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../format/ggml_blocks.hpp"
#include "../model/llama_model.hpp"

namespace autoround {

/// llama.cpp's LLAMA_FTYPE_MOSTLY_* file types we write.
enum class GgufMix { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, MXFP4 };

struct GgufScheme {
  std::string name;            ///< "q4_0", "q4_k_m", ... as given
  GgufMix mix;                 ///< which of llama-quantize's file types
  ggml::Type base;             ///< the type of most tensors
  std::uint32_t file_type = 0; ///< LLAMA_FTYPE_MOSTLY_*, stored as general.file_type
  /// Types chosen per tensor (by GGUF name) ahead of the mix's rules: a size budget's choice
  /// (export/gguf_budget.hpp), as llama-quantize's --tensor-type overrides are.
  std::map<std::string, ggml::Type> tensor_types = {};
};

/// A --format gguf:TYPE name (llama-quantize's names, lower case; q3_k, q4_k, q5_k are its
/// aliases of the _m mixes).
inline GgufScheme gguf_scheme(const std::string& name) {
  using T = ggml::Type;
  using M = GgufMix;
  if (name == "q4_0") return {name, M::Q4_0, T::Q4_0, 2};
  if (name == "q4_1") return {name, M::Q4_1, T::Q4_1, 3};
  if (name == "q8_0") return {name, M::Q8_0, T::Q8_0, 7};
  if (name == "q5_0") return {name, M::Q5_0, T::Q5_0, 8};
  if (name == "q5_1") return {name, M::Q5_1, T::Q5_1, 9};
  if (name == "q2_k") return {name, M::Q2_K, T::Q2_K, 10};
  if (name == "q3_k_s") return {name, M::Q3_K_S, T::Q3_K, 11};
  if (name == "q3_k_m" || name == "q3_k") return {name, M::Q3_K_M, T::Q3_K, 12};
  if (name == "q3_k_l") return {name, M::Q3_K_L, T::Q3_K, 13};
  if (name == "q4_k_s") return {name, M::Q4_K_S, T::Q4_K, 14};
  if (name == "q4_k_m" || name == "q4_k") return {name, M::Q4_K_M, T::Q4_K, 15};
  if (name == "q5_k_s") return {name, M::Q5_K_S, T::Q5_K, 16};
  if (name == "q5_k_m" || name == "q5_k") return {name, M::Q5_K_M, T::Q5_K, 17};
  if (name == "q6_k") return {name, M::Q6_K, T::Q6_K, 18};
  if (name == "mxfp4") return {name, M::MXFP4, T::MXFP4, 38};  // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
  throw Error("gguf:" + name +
              ": unknown GGUF type (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, "
              "q5_k_m, q6_k, mxfp4; q3_k, q4_k, q5_k are the _m mixes)");
}

namespace detail {
/// The type llama.cpp falls back to when rows of `cols` cannot hold `t`'s blocks.
inline ggml::Type fit_row(ggml::Type t, Index cols) {
  using T = ggml::Type;
  if (cols % static_cast<Index>(ggml::traits(t).block_weights) == 0) return t;
  T fallback = t;
  switch (t) {
    case T::Q2_K:
    case T::Q3_K: fallback = T::Q4_0; break;
    case T::Q4_K: fallback = T::Q5_0; break;
    case T::Q5_K: fallback = T::Q5_1; break;
    case T::Q6_K: fallback = T::Q8_0; break;
    default: break;
  }
  return cols % static_cast<Index>(ggml::traits(fallback).block_weights) == 0 ? fallback : T::F16;
}

/// llama.cpp's use_more_bits: the first and last eighth, and every third in between.
inline bool use_more_bits(Index i, Index n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }
}  // namespace detail

/// Where a GGUF tensor sits: "blk.N.<linear>.weight" -> {N, linear}; other names -> {N or none, none}.
/// "blk.N.ffn_gate_exps.weight" -> {N, Gate, experts}; "blk.N.ffn_down_shexp.weight" -> {N, Down, shared};
/// gemma4's "blk.N.ffn_gate_up_exps.weight" -> {N, Gate, experts, gate_up}.
/// deepseek2's latent attention: "attn_q_a" -> {N, Query, latent}, "attn_q_b" Query, "attn_kv_a_mqa"
/// Key, "attn_k_b" / "attn_v_b" the key / value rows of Value (kv_b), each typed by llama-quantize's
/// OTHER rule (the scheme's base type); a legacy "attn_kv_b" is Value, typed as attn_v.
struct GgufTensorSite {
  enum class Owner { Block, Experts, SharedExpert };
  /// Which rows of the slot's layer the tensor holds: all, or (deepseek2) kv_b's key rows
  /// transposed per head (attn_k_b) or its value rows (attn_v_b).
  enum class Part { Whole, KeyRows, ValueRows };
  std::optional<Index> block;
  std::optional<Linear> linear;
  Owner owner = Owner::Block;  ///< a 3-D tensor of every routed expert, or the shared expert's
  bool keep_type = false;      ///< a router (ffn_gate_inp): llama-quantize never quantizes it
  bool latent = false;         ///< the latent slot (q_a_proj: LinearSlot::latent), not `linear`'s own
  Part part = Part::Whole;
  bool gate_up = false;        ///< gemma4's ffn_gate_up_exps (linear Gate, its category): each expert's gate rows, then its up rows
  bool other_rule = false;     ///< llama-quantize's category OTHER: the base type whatever `linear` is
  bool per_layer = false;      ///< gemma4 E2B / E4B's per-layer branch: inp_gate (linear Gate), proj (linear Down); OTHER
  /// The layer whose llama-quantize rule types the tensor (none: the base type).
  std::optional<Linear> rule() const { return other_rule ? std::nullopt : linear; }
  /// The same under `mix` (gguf_rule_under).
  std::optional<Linear> rule(GgufMix mix) const;
};

/// The rule a tensor of layer `linear` is typed by under `mix`, `rule` being llama-quantize's own
/// (none: OTHER, the base type): gguf:mxfp4's overrides (attn_(q|k|v|output), ffn_(gate|up|down),
/// matched anywhere in a name) cover deepseek2's OTHER tensors too, so there every linear's own.
inline std::optional<Linear> gguf_rule_under(GgufMix mix, std::optional<Linear> rule, Linear linear) {
  return mix == GgufMix::MXFP4 ? std::optional<Linear>(linear) : rule;
}
inline std::optional<Linear> GgufTensorSite::rule(GgufMix mix) const { return linear ? gguf_rule_under(mix, rule(), *linear) : rule(); }
inline GgufTensorSite gguf_tensor_site(const std::string& name) {
  GgufTensorSite site;
  if (name.rfind("blk.", 0) != 0) return site;
  const auto dot = name.find('.', 4);
  const std::string number = name.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
  if (number.empty() || number.size() >= 10 || number.find_first_not_of("0123456789") != std::string::npos) return site;
  site.block = std::stoll(number);
  const std::string rest = name.substr(dot + 1);
  for (Linear l : all_linears) {
    if (rest == std::string(gguf_name(l)) + ".weight") site.linear = l;
    if (l == Linear::Gate || l == Linear::Up || l == Linear::Down) {
      if (rest == std::string(gguf_name(l)) + "_exps.weight") site.linear = l, site.owner = GgufTensorSite::Owner::Experts;
      if (rest == std::string(gguf_name(l)) + "_shexp.weight") site.linear = l, site.owner = GgufTensorSite::Owner::SharedExpert;
    }
  }
  // gemma4's fused experts: llama-quantize's category FFN_GATE (the name holds "ffn_gate", not "ffn_up")
  if (rest == "ffn_gate_up_exps.weight") site.linear = Linear::Gate, site.owner = GgufTensorSite::Owner::Experts, site.gate_up = true;
  // phi3's fused attn_qkv: llama-quantize counts it as an attn_v and gives it attn_v's type
  // (llama-quant.cpp's category_is_attn_v; its own attn_qkv rule comes after and is never reached)
  if (rest == "attn_qkv.weight") site.linear = Linear::Value;
  // deepseek2 (tensor_get_category: these names match none of its patterns but attn_kv_b's)
  using P = GgufTensorSite::Part;
  if (rest == "attn_q_a.weight") site.linear = Linear::Query, site.latent = true, site.other_rule = true;
  if (rest == "attn_q_b.weight") site.linear = Linear::Query, site.other_rule = true;
  if (rest == "attn_kv_a_mqa.weight") site.linear = Linear::Key, site.other_rule = true;
  if (rest == "attn_k_b.weight") site.linear = Linear::Value, site.part = P::KeyRows, site.other_rule = true;
  if (rest == "attn_v_b.weight") site.linear = Linear::Value, site.part = P::ValueRows, site.other_rule = true;
  if (rest == "attn_kv_b.weight") site.linear = Linear::Value;  // ATTENTION_KV_B: attn_v-like
  // gemma4 E2B / E4B's per-layer branch (LinearSlot::per_layer): no category of llama-quantize's names them
  if (rest == "inp_gate.weight") site.linear = Linear::Gate, site.per_layer = true, site.other_rule = true;
  if (rest == "proj.weight") site.linear = Linear::Down, site.per_layer = true, site.other_rule = true;
  site.keep_type = rest.find("ffn_gate_inp") != std::string::npos;
  return site;
}

/// The linear layers a GGUF tensor of a block holds, in its row order, where it holds several:
/// attn_qkv [Q | K | V]; phi3's ffn_up [gate | up] (llama.cpp's phi3 graph has no ffn_gate).
/// Empty for a tensor of one layer.
inline std::vector<Linear> gguf_fused_layers(const std::string& name, const std::string& arch) {
  const GgufTensorSite site = gguf_tensor_site(name);
  if (!site.block || !site.linear || site.owner != GgufTensorSite::Owner::Block) return {};
  const std::string rest = name.substr(name.find('.', 4) + 1);
  if (rest == "attn_qkv.weight") return {Linear::Query, Linear::Key, Linear::Value};
  if (arch == "phi3" && rest == "ffn_up.weight") return {Linear::Gate, Linear::Up};
  return {};
}

/// The GGUF tensor (within its block) that holds linear layer `l` of an `arch` model, and the
/// layer whose llama-quantize rule gives its type (none: the base type): phi3's q and k are in
/// attn_qkv (attn_v's rule), its gate in ffn_up; deepseek2's q_b, kv_a and kv_b (tuned for its value
/// rows' tensor, attn_v_b) are typed by the OTHER rule, its q_a too (gguf_latent_tensor).
inline std::pair<std::string, std::optional<Linear>> gguf_tensor_of(Linear l, const std::string& arch) {
  if (arch == "phi3" && (l == Linear::Query || l == Linear::Key || l == Linear::Value)) return {"attn_qkv", Linear::Value};
  if (arch == "phi3" && (l == Linear::Gate || l == Linear::Up)) return {"ffn_up", Linear::Up};
  if (arch == "deepseek2" && l == Linear::Query) return {"attn_q_b", std::nullopt};
  if (arch == "deepseek2" && l == Linear::Key) return {"attn_kv_a_mqa", std::nullopt};
  if (arch == "deepseek2" && l == Linear::Value) return {"attn_v_b", std::nullopt};
  return {gguf_name(l), l};
}
/// deepseek2's q_a_proj (LinearSlot::latent): its tensor, typed by the OTHER rule.
inline constexpr const char* gguf_latent_tensor = "attn_q_a";

/// The block type llama-quantize gives a 2-D (or an experts' 3-D) tensor of a LLaMA-family model
/// under `scheme`. `linear`/`block`: set for a block's linear layers (an expert's gate/up/down as
/// the dense ones); `is_output`: output.weight, or token_embd with tied embeddings; `experts`: the
/// file's {arch}.expert_count (0: dense). 70B-class models (80 layers, grouped-query attention,
/// llama.cpp's LLM_TYPE_70B) get attn_v at Q5_K where the mix says Q3_K or Q4_K.
inline ggml::Type gguf_tensor_type(const GgufScheme& scheme, Index cols, std::optional<Index> block, std::optional<Linear> linear,
                                   const LlamaConfig& config, bool is_output, Index experts = 0) {
  using T = ggml::Type;
  using M = GgufMix;
  const M mix = scheme.mix;
  T type = scheme.base;
  const bool eight_experts = experts == 8;
  if (mix == M::MXFP4) return detail::fit_row(block && linear ? T::MXFP4 : T::Q8_0, cols);
  if (is_output) {
    const bool fits = cols % static_cast<Index>(ggml::traits(scheme.base).block_weights) == 0;
    type = !fits || scheme.base == T::Q8_0 ? T::Q8_0 : T::Q6_K;
  } else if (block && linear == Linear::Value) {
    Index i = *block, n = config.layers;
    if (config.full_values_from_keys || config.kv_shared_layers > 0) {
      // llama-quantize counts the attn_v tensors it visits: gemma4's full layers with keys as values
      // have none, nor have E2B / E4B's kv-shared layers
      i = n = 0;
      for (Index b = 0; b < config.layers; ++b)
        if (!config.values_from_keys(config.is_sliding(b)) && !config.kv_shared(b)) i += b < *block, ++n;
    }
    const bool gqa4 = config.kv_heads > 0 && config.heads / config.kv_heads >= 4;
    if (mix == M::Q2_K) type = gqa4 ? T::Q4_K : T::Q3_K;
    else if (mix == M::Q3_K_M) type = i < 2 ? T::Q5_K : T::Q4_K;
    else if (mix == M::Q3_K_L) type = T::Q5_K;
    else if ((mix == M::Q4_K_M || mix == M::Q5_K_M) && detail::use_more_bits(i, n)) type = T::Q6_K;
    else if (mix == M::Q4_K_S && i < 4) type = T::Q5_K;
    const bool is_70b = config.layers == 80 && config.heads != config.kv_heads;
    if (is_70b && (type == T::Q3_K || type == T::Q4_K)) type = T::Q5_K;
    if (eight_experts) type = T::Q8_0;
  } else if (block && linear == Linear::Key) {
    if (eight_experts) type = T::Q8_0;
  } else if (block && linear == Linear::Down) {
    const Index i = *block, n = config.layers;
    if (mix == M::Q2_K) type = T::Q3_K;
    else if (mix == M::Q3_K_M) type = i < n / 16 ? T::Q5_K : T::Q4_K;
    else if (mix == M::Q3_K_L) type = T::Q5_K;
    else if ((mix == M::Q4_K_M || mix == M::Q5_K_M) && detail::use_more_bits(i, n)) type = T::Q6_K;
    else if (mix == M::Q4_K_S && i < n / 8) type = T::Q5_K;
  } else if (block && linear == Linear::Output && eight_experts) {
    if (mix == M::Q2_K || mix == M::Q3_K_S || mix == M::Q3_K_M || mix == M::Q4_K_S || mix == M::Q4_K_M) type = T::Q5_K;
  } else if (block && linear == Linear::Output) {
    if (mix == M::Q2_K) type = T::Q3_K;
    else if (mix == M::Q3_K_M) type = T::Q4_K;
    else if (mix == M::Q3_K_L) type = T::Q5_K;
  }
  return detail::fit_row(type, cols);
}

}  // namespace autoround
