#pragma once
// A LLaMA-family decoder held in float32: configuration and weights. Reading one from a file:
// model/gguf_source.hpp (GGUF), model/hf_loader.hpp (Hugging Face), block by block.
//
// RoPE: llama.cpp's converter permutes the rows of attn_q / attn_k so that rotating *adjacent*
// pairs (x[2i], x[2i+1]) is equivalent to Hugging Face's rotate-half; weights read from GGUF
// therefore use RopeStyle::AdjacentPairs, weights read from a Hugging Face checkpoint HalfSplit.
#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "../format/gguf_reader.hpp"
#include "activation_quant.hpp"
#include "moe_mlp.hpp"

namespace autoround {

enum class RopeStyle { AdjacentPairs, HalfSplit };

/// The MLP's gated activation: SwiGLU silu(g)·u (LLaMA, Qwen, Mistral) or GeGLU with the tanh
/// approximation of GELU, gelu_tanh(g)·u (Gemma: gelu_pytorch_tanh).
enum class MlpActivation { Silu, GeluTanh };

struct LlamaConfig {
  Index layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  float rope_theta = 10000.0f;
  /// RoPE scaling as one divisor per rotated pair: frequency i is theta^(-2i/head_dim) / divisor[i]
  /// (empty: no scaling). Linear scaling divides all by its factor; llama3 scaling divides low
  /// frequencies by its factor and blends in between (rope_llama3_divisors); GGUF files store
  /// the divisors themselves (rope_freqs.weight).
  std::vector<float> rope_divisors;
  float rms_eps = 1e-5f;
  RopeStyle rope_style = RopeStyle::HalfSplit;
  /// Partial rotary embedding (Phi-4-mini, partial_rotary_factor < 1): only each head's first
  /// rotary_dims dimensions rotate, paired within them (0: all head_dim). Frequencies then run
  /// theta^(−2i/rotary_dims).
  Index rotary_dims = 0;
  /// LongRoPE (Phi-3 128k): cos and sin × rope_attention_factor, and for sequences longer than
  /// rope_long_after tokens the per-pair divisors rope_long_divisors instead of rope_divisors
  /// (transformers' dynamic longrope; 0 / empty: none).
  float rope_attention_factor = 1;
  std::vector<float> rope_long_divisors;
  Index rope_long_after = 0;
  bool tied_embeddings = true;
  Index experts = 0;  ///< routed experts of the mixture-of-experts layers (0: a dense model)
  std::string model_type = "llama";  ///< "llama" / "mistral", "qwen2" (q/k/v biases), "qwen3" (q/k norms), "gemma3_text" ...

  // What Gemma's blocks compute differently (the defaults are LLaMA's). With them the block is
  //   h = x + post_attn_norm(attention(attn_norm(x)));  out = h + post_ffn_norm(MLP(ffn_norm(h)))
  // (sandwich norms: LlamaBlock::post_attn_norm / post_ffn_norm, present or not).
  MlpActivation activation = MlpActivation::Silu;
  float attention_scale = 0;    ///< scores q·k × this (0: 1/√head_dim); Gemma: query_pre_attn_scalar^−½
  float attention_softcap = 0;  ///< Gemma 2: scores → cap·tanh(scores/cap) before the mask (0: none)
  float logit_softcap = 0;      ///< Gemma 2: logits → cap·tanh(logits/cap) (0: none)
  float embedding_scale = 1;    ///< Gemma: embeddings × √hidden, in the checkpoint's float type as transformers rounds it
  Index sliding_window = 0;     ///< a sliding layer's query sees itself and the window − 1 tokens before it
  std::vector<bool> sliding;    ///< per layer: sliding-window attention (empty: no layer slides)
  float sliding_rope_theta = 0; ///< the sliding layers' RoPE base, unscaled (0: rope_theta and rope_divisors, as full layers)
  /// Hugging Face stores these RMSNorm weights as w and computes with (1 + w) (Gemma); in memory
  /// every norm weight is the factor itself (1 + w), as llama.cpp's GGUF files store it, and the
  /// Hugging Face export subtracts the one again.
  bool norm_weight_plus_one = false;

  // Gemma 4: its full-attention layers have a geometry of their own (global_head_dim and, with
  // attention_k_eq_v, num_global_key_value_heads: layer_config() gives a layer's), their values
  // may be the keys' projection itself (no v_proj: V = k_proj's output before k_norm and RoPE),
  // and every layer's values pass a weightless per-head RMSNorm (v_norm). Each block's output is
  // then multiplied by its LlamaBlock::layer_scalar.
  Index full_head_dim = 0;        ///< a full-attention layer's head_dim (0: head_dim)
  Index full_kv_heads = 0;        ///< a full-attention layer's KV heads (0: kv_heads)
  bool full_values_from_keys = false;  ///< a full-attention layer has no v_proj: its values are k_proj's output
  bool value_norm = false;        ///< V → per-head RMSNorm without weight (Gemma 4's v_norm)

  // Gemma 4's small models (E2B, E4B). Per-layer embeddings: every layer also reads a [tokens,
  // per_layer_input] input of its own, made from the tokens (PerLayerEmbedding), through a branch
  // at its end (LlamaBlock::per_layer). KV sharing: the last kv_shared_layers layers have no
  // k_proj / v_proj and attend with the keys and values of the last earlier layer of their kind
  // (sliding or full: kv_donor); with double_wide_mlp their MLP is twice intermediate wide.
  Index per_layer_input = 0;      ///< hidden_size_per_layer_input (0: no per-layer embeddings)
  Index per_layer_vocab = 0;      ///< rows of the per-layer embedding table (vocab_size_per_layer_input)
  Index kv_shared_layers = 0;     ///< num_kv_shared_layers
  bool double_wide_mlp = false;   ///< use_double_wide_mlp

  // Where the language model's tensors are in a Hugging Face checkpoint: "model." for a causal LM;
  // a vision-language checkpoint's ("language_model.model." as transformers saves Gemma 3,
  // Mistral 3 and LLaVA, "model.language_model." in its in-memory naming) keeps its vision tower
  // and projector beside them, which exports copy byte for byte.
  std::string hf_prefix = "model.";
  std::string hf_lm_head = "lm_head.weight";
  bool vision_language = false;

  // DeepSeek-V3's multi-head latent attention (MLA; kv_lora_rank > 0, model/latent_attention.hpp):
  // queries through a low-rank q_a → RMSNorm → q_b (rank q_lora_rank), keys and values from one
  // latent per token (kv_a → [latent kv_lora_rank | shared roped key] → RMSNorm(latent) → kv_b →
  // per head [key qk_nope_dim | value v_head_dim]). head_dim is then the roped part of a query /
  // key head (qk_rope_head_dim), as transformers sets it; attention_scale is (qk_nope + qk_rope)^−½
  // × YaRN's mscale², set by the loader.
  Index q_lora_rank = 0, kv_lora_rank = 0, qk_nope_dim = 0, v_head_dim = 0;
  /// q_a_layernorm's and kv_a_layernorm's epsilon: transformers builds them with RMSNorm's default
  /// 1e-6 whatever rms_norm_eps says; llama.cpp's deepseek2 uses the model's epsilon.
  float latent_norm_eps = 1e-6f;
  bool latent_attention() const { return kv_lora_rank > 0; }
  Index qk_head_dim() const { return qk_nope_dim + head_dim; }

  /// Whether layer `layer`'s values come from its keys' projection (Gemma 4's full layers with attention_k_eq_v).
  bool values_from_keys(bool sliding_layer) const { return full_values_from_keys && !sliding_layer; }
  bool is_sliding(Index layer) const { return layer >= 0 && static_cast<std::size_t>(layer) < sliding.size() && sliding[static_cast<std::size_t>(layer)]; }
  /// Whether the block is LLaMA's: none of the Gemma / Phi-3 settings (the CUDA backend computes
  /// all but Gemma 2's attention soft-capping).
  bool llama_shaped() const {
    return activation == MlpActivation::Silu && attention_scale == 0 && attention_softcap == 0 && logit_softcap == 0 &&
           embedding_scale == 1 && sliding_window == 0 && (rotary_dims == 0 || rotary_dims == head_dim) &&
           rope_attention_factor == 1 && rope_long_divisors.empty() && !latent_attention() && full_head_dim == 0 &&
           full_kv_heads == 0 && !full_values_from_keys && !value_norm && per_layer_input == 0 && kv_shared_layers == 0;
  }
  Index rotary() const { return rotary_dims > 0 ? rotary_dims : head_dim; }

  /// Whether layer `layer` has no keys and values of its own (Gemma 4's KV sharing).
  bool kv_shared(Index layer) const { return kv_shared_layers > 0 && layer >= layers - kv_shared_layers; }
  /// The layer whose keys and values kv-shared layer `layer` attends with: the last layer before
  /// the shared ones of the same kind, sliding or full (transformers' rule; llama.cpp hard-codes
  /// the last two, which is the same for the released models); -1 where there is none.
  Index kv_donor(Index layer) const {
    if (!kv_shared(layer)) return -1;
    for (Index d = layers - kv_shared_layers - 1; d >= 0; --d)
      if (is_sliding(d) == is_sliding(layer)) return d;
    return -1;
  }
  /// Whether some kv-shared layer attends with layer `layer`'s keys and values.
  bool kv_donates(Index layer) const {
    for (Index l = layers - kv_shared_layers; kv_shared_layers > 0 && l < layers; ++l)
      if (kv_donor(l) == layer) return true;
    return false;
  }
  /// Layer `layer`'s MLP width (Gemma 4 E2B's kv-shared layers: twice intermediate).
  Index layer_intermediate(Index layer) const { return double_wide_mlp && kv_shared(layer) ? 2 * intermediate : intermediate; }
};

/// The configuration a layer's attention computes with: a sliding layer's own RoPE base (Gemma's
/// local RoPE, unscaled) where the model has one; a full-attention layer's own head size and KV
/// heads (Gemma 4). Everything else is the model's.
inline LlamaConfig layer_config(const LlamaConfig& c, bool sliding) {
  LlamaConfig l = c;
  if (sliding && c.sliding_rope_theta > 0) {
    l.rope_theta = c.sliding_rope_theta;
    l.rope_divisors.clear();
  }
  if (!sliding && c.full_head_dim > 0) l.head_dim = c.full_head_dim;
  if (!sliding && c.full_kv_heads > 0) l.kv_heads = c.full_kv_heads;
  return l;
}
/// Layer `layer`'s configuration: as above, and its own MLP width (Gemma 4 E2B's double-wide
/// MLP in the kv-shared layers).
inline LlamaConfig layer_config(const LlamaConfig& c, Index layer) {
  LlamaConfig l = layer_config(c, c.is_sliding(layer));
  l.intermediate = c.layer_intermediate(layer);
  return l;
}
/// Whether layer_config(c, sliding) differs from c (the block math then works on a copy).
inline bool has_layer_config(const LlamaConfig& c, bool sliding) {
  return sliding ? c.sliding_rope_theta > 0 : c.full_head_dim > 0 || c.full_kv_heads > 0;
}

/// Llama 3.1's RoPE scaling (transformers' _compute_llama3_parameters), as divisors of the
/// unscaled frequencies: wavelengths above original_max / low_freq_factor are divided by
/// `factor`, those below original_max / high_freq_factor kept, those between blended.
inline std::vector<float> rope_llama3_divisors(float theta, Index head_dim, double factor, double low_freq_factor,
                                               double high_freq_factor, double original_max_positions) {
  constexpr double pi = 3.14159265358979323846;
  std::vector<float> divisors(static_cast<std::size_t>(head_dim / 2));
  const double low_wavelen = original_max_positions / low_freq_factor, high_wavelen = original_max_positions / high_freq_factor;
  for (Index i = 0; i < head_dim / 2; ++i) {
    const double frequency = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double wavelen = 2 * pi / frequency;
    double scaled = wavelen > low_wavelen ? frequency / factor : frequency;
    if (wavelen >= high_wavelen && wavelen <= low_wavelen) {
      const double smooth = (original_max_positions / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      scaled = (1 - smooth) * frequency / factor + smooth * frequency;
    }
    divisors[static_cast<std::size_t>(i)] = static_cast<float>(frequency / scaled);
  }
  return divisors;
}

/// YaRN's RoPE scaling (transformers' _compute_yarn_parameters; GPT-OSS, DeepSeek-V3), as divisors
/// of the unscaled frequencies of the `rotary` rotated dimensions: pair i's frequency blends the
/// interpolated f/factor and the original f by a ramp that runs from the pair that turns
/// beta_fast times over original_max positions (kept: f) to the one that turns beta_slow times
/// (interpolated: f/factor); `truncate` rounds the ramp's ends outward to whole pairs first.
inline std::vector<float> rope_yarn_divisors(double theta, Index rotary, double factor, double beta_fast, double beta_slow,
                                             double original_max_positions, bool truncate) {
  constexpr double pi = 3.14159265358979323846;
  const double dim = static_cast<double>(rotary);
  auto correction_dim = [&](double rotations) { return dim * std::log(original_max_positions / (rotations * 2 * pi)) / (2 * std::log(theta)); };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, dim - 1);
  if (low == high) high += 0.001;
  std::vector<float> divisors(static_cast<std::size_t>(rotary / 2));
  for (Index i = 0; i < rotary / 2; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);  // 0: keep f, 1: f / factor
    const double keep = 1 - ramp;
    divisors[static_cast<std::size_t>(i)] = static_cast<float>(1.0 / ((1 - keep) / factor + keep));
  }
  return divisors;
}

/// YaRN's attention factor when the configuration gives none: 0.1 ln(factor) + 1 (1 for factor ≤ 1),
/// or with DeepSeek's mscale and mscale_all_dim the ratio of two such terms.
inline float rope_yarn_attention_factor(double factor, double mscale = 0, double mscale_all_dim = 0) {
  auto m = [&](double s) { return factor <= 1 ? 1.0 : 0.1 * s * std::log(factor) + 1.0; };
  return static_cast<float>(mscale != 0 && mscale_all_dim != 0 ? m(mscale) / m(mscale_all_dim) : m(1.0));
}

/// The seven linear layers of a block, in execution order.
enum class Linear { Query, Key, Value, Output, Gate, Up, Down };
inline constexpr std::array<Linear, 7> all_linears{Linear::Query, Linear::Key,  Linear::Value, Linear::Output,
                                                   Linear::Gate,  Linear::Up,   Linear::Down};
inline const char* gguf_name(Linear l) {
  constexpr const char* names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  return names[static_cast<int>(l)];
}
inline const char* hf_name(Linear l) {
  constexpr const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                   "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return names[static_cast<int>(l)];
}

/// A latent-attention block's (DeepSeek-V3) Hugging Face names of its attention slots: Query is
/// q_b_proj, Key kv_a_proj_with_mqa (the latent and the shared roped key), Value kv_b_proj (every
/// head's key and value from the latent); q_a_proj is LinearSlot::latent (model/linear_slots.hpp).
inline const char* hf_name(Linear l, const std::string& model_type) {
  if (model_type != "deepseek_v3" && model_type != "deepseek2") return hf_name(l);
  constexpr const char* names[] = {"self_attn.q_b_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.kv_b_proj", "self_attn.o_proj"};
  return static_cast<int>(l) < 4 ? names[static_cast<int>(l)] : hf_name(l);
}

/// [out, in] of each linear layer of a block.
inline std::pair<Index, Index> linear_shape(const LlamaConfig& c, Linear l) {
  if (c.latent_attention()) switch (l) {  // DeepSeek-V3's five attention layers (q_a_proj: [q_lora_rank, hidden])
      case Linear::Query: return {c.heads * c.qk_head_dim(), c.q_lora_rank > 0 ? c.q_lora_rank : c.hidden};
      case Linear::Key: return {c.kv_lora_rank + c.head_dim, c.hidden};
      case Linear::Value: return {c.heads * (c.qk_nope_dim + c.v_head_dim), c.kv_lora_rank};
      case Linear::Output: return {c.hidden, c.heads * c.v_head_dim};
      default: break;
    }
  const Index q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  switch (l) {
    case Linear::Query: return {q_out, c.hidden};
    case Linear::Key:
    case Linear::Value: return {kv_out, c.hidden};
    case Linear::Output: return {c.hidden, q_out};
    case Linear::Gate:
    case Linear::Up: return {c.intermediate, c.hidden};
    default: return {c.hidden, c.intermediate};
  }
}

/// Gemma 4 26B-A4B: the experts run beside the block's dense MLP rather than in its place, each
/// branch with norms of its own, and the router reads the residual stream h itself:
///   out = h + post_ffn_norm(mlp_norm(MLP(ffn_norm h)) + experts_norm(experts(input_norm h)))
///   router input = rms(h) × router_scale / √hidden   (an RMSNorm without weight, then the scale)
struct ExpertsBesideMlp {
  Eigen::VectorXf input_norm;    ///< pre_feedforward_layernorm_2 (GGUF pre_ffw_norm_2): the experts' input
  Eigen::VectorXf mlp_norm;      ///< post_feedforward_layernorm_1 (post_ffw_norm_1): the dense MLP's output
  Eigen::VectorXf experts_norm;  ///< post_feedforward_layernorm_2 (post_ffw_norm_2): the experts' output
  Eigen::VectorXf router_scale;  ///< router.scale (ffn_gate_inp.scale) [hidden], not a norm weight: never (1 + w)
  /// The router's input as one RMSNorm weight: router_scale / √hidden.
  Eigen::VectorXf router_norm() const { return router_scale / std::sqrt(static_cast<float>(router_scale.size())); }
};

/// A block's MLP as a mixture of experts (Qwen3-MoE, Qwen2-MoE, Mixtral, DeepSeek-V3's routing),
/// or beside the dense MLP (Gemma 4):
/// computed by block_forward; its experts are linear slots of the block (model/linear_slots.hpp),
/// tuned on the CPU (docs/block-descriptions.md).
struct MoeFeedForward {
  MoeSpec spec;
  MoeWeights weights;
  std::optional<ExpertsBesideMlp> beside_mlp;  ///< Gemma 4: beside the block's dense MLP (its gate/up/down kept)
};

/// What a latent-attention block (DeepSeek-V3's MLA) holds beyond its four attention slots.
struct LatentAttention {
  RowMatrix query_a;              ///< q_a_proj [q_lora_rank, hidden] (released, empty, once a streaming run has quantized it)
  Eigen::VectorXf query_a_norm;   ///< q_a_layernorm [q_lora_rank]; empty: no q_a, Query (q_proj) reads the normed hidden state
  Eigen::VectorXf kv_a_norm;      ///< kv_a_layernorm [kv_lora_rank]
};

/// Gemma 4 E2B / E4B: the model's per-layer embeddings. Layer l's input, per token with ids t and
/// scaled embedding x0 (embedding row × √hidden):
///   ple_l = (RMSNorm(x0 · projection_lᵀ / √hidden; norm) + table[t]_l · √P) / √2
/// where _l is the l-th slice of P columns (table) or rows (projection): per_layer_input().
struct PerLayerEmbedding {
  RowMatrix table;        ///< embed_tokens_per_layer [per_layer_vocab, layers · P]
  RowMatrix projection;   ///< per_layer_model_projection [layers · P, hidden]
  Eigen::VectorXf norm;   ///< per_layer_projection_norm [P]
};

/// A layer's per-layer input branch (Gemma 4 E2B / E4B), at the block's end, before layer_scalar:
///   out = h + post_norm(projection(gelu_tanh(gate(h)) ⊙ ple_l))
/// gate and projection are linear slots (tuned; LinearSlot::per_layer), post_norm is not.
struct PerLayerBranch {
  RowMatrix gate;             ///< per_layer_input_gate [P, hidden]
  RowMatrix projection;       ///< per_layer_projection [hidden, P]
  Eigen::VectorXf post_norm;  ///< post_per_layer_input_norm [hidden]
};

struct LlamaBlock {
  std::array<RowMatrix, 7> linear;  ///< [out, in] each, indexed by Linear; gate/up/down empty with `moe` (unless beside_mlp)
  Eigen::VectorXf attn_norm, ffn_norm;
  std::array<Eigen::VectorXf, 3> qkv_bias;  ///< Qwen2's q/k/v projection biases; empty when absent (LLaMA)
  Eigen::VectorXf output_bias;              ///< GPT-OSS's o_proj bias [hidden]; empty when absent
  Eigen::VectorXf sinks;                    ///< GPT-OSS's attention sinks [heads]: a logit per head every query's softmax also spreads over; empty: none
  Eigen::VectorXf q_norm, k_norm;           ///< Qwen3's per-head RMSNorm of q and k [head_dim]; empty when absent
  std::optional<MoeFeedForward> moe;        ///< the MLP as a mixture of experts, when it is one
  Eigen::VectorXf post_attn_norm, post_ffn_norm;  ///< Gemma's norms of the attention's and the MLP's outputs; empty when absent
  bool sliding = false;                     ///< sliding-window attention (LlamaConfig::sliding_window, sliding_rope_theta)
  std::optional<ActivationQuant> act_quant; ///< its linear layers' inputs quantized (MXFP4/MXFP8/NVFP4 models); none in float
  std::optional<LatentAttention> mla;      ///< DeepSeek-V3's latent attention (LlamaConfig::latent_attention)
  bool values_from_keys = false;            ///< no v_proj (linear[Value] empty, no slot): V is k_proj's output (Gemma 4's full layers)
  float layer_scalar = 1;                   ///< Gemma 4: the block's whole output (residual included) × this
  std::optional<PerLayerBranch> per_layer;  ///< Gemma 4 E2B / E4B: the per-layer input's branch
  bool kv_shared = false;                   ///< no k_proj / v_proj (linear[Key], [Value] empty, no slots): the donor's keys and values (Gemma 4)
  RowMatrix& operator[](Linear l) { return linear[static_cast<std::size_t>(l)]; }
  const RowMatrix& operator[](Linear l) const { return linear[static_cast<std::size_t>(l)]; }
};

/// Gemma's input scaling of the embedding rows (× LlamaConfig::embedding_scale), in place.
inline void scale_embeddings(RowMatrix& rows, const LlamaConfig& c) {
  if (c.embedding_scale != 1.0f) rows *= c.embedding_scale;
}
/// Gemma 2's soft-capping of the logits (cap·tanh(logits/cap)), in place.
inline void soft_cap_logits(RowMatrix& logits, const LlamaConfig& c) {
  if (c.logit_softcap > 0) logits = (logits.array() / c.logit_softcap).tanh() * c.logit_softcap;
}

struct LlamaModel {
  LlamaConfig config;
  RowMatrix embedding;  ///< [vocab, hidden]
  std::vector<LlamaBlock> blocks;
  Eigen::VectorXf final_norm;
  RowMatrix output;  ///< [vocab, hidden]; empty when tied to the embedding
  std::optional<PerLayerEmbedding> per_layer;  ///< Gemma 4 E2B / E4B (LlamaConfig::per_layer_input)
  const RowMatrix& lm_head() const { return config.tied_embeddings ? embedding : output; }
};

}  // namespace autoround
