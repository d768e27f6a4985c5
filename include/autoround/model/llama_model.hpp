#pragma once
// A LLaMA-family decoder held in float32: configuration and weights. Reading one from a file:
// model/gguf_source.hpp (GGUF), model/hf_loader.hpp (Hugging Face), block by block.
//
// RoPE: llama.cpp's converter permutes the rows of attn_q / attn_k so that rotating *adjacent*
// pairs (x[2i], x[2i+1]) is equivalent to Hugging Face's rotate-half; weights read from GGUF
// therefore use RopeStyle::AdjacentPairs, weights read from a Hugging Face checkpoint HalfSplit.
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "../format/gguf_reader.hpp"
#include "moe_mlp.hpp"

namespace autoround {

enum class RopeStyle { AdjacentPairs, HalfSplit };

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
  bool tied_embeddings = true;
  std::string model_type = "llama";  ///< "llama" / "mistral", "qwen2" (q/k/v biases), "qwen3" (q/k norms)
};

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

/// [out, in] of each linear layer of a block.
inline std::pair<Index, Index> linear_shape(const LlamaConfig& c, Linear l) {
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

/// A block's MLP as a mixture of experts (Qwen3-MoE, Qwen2-MoE, Mixtral, DeepSeek-V3's routing):
/// computed by block_forward; its experts are linear slots of the block (model/linear_slots.hpp),
/// tuned on the CPU (docs/block-descriptions.md).
struct MoeFeedForward {
  MoeSpec spec;
  MoeWeights weights;
};

struct LlamaBlock {
  std::array<RowMatrix, 7> linear;  ///< [out, in] each, indexed by Linear; gate/up/down empty with `moe`
  Eigen::VectorXf attn_norm, ffn_norm;
  std::array<Eigen::VectorXf, 3> qkv_bias;  ///< Qwen2's q/k/v projection biases; empty when absent (LLaMA)
  Eigen::VectorXf q_norm, k_norm;           ///< Qwen3's per-head RMSNorm of q and k [head_dim]; empty when absent
  std::optional<MoeFeedForward> moe;        ///< the MLP as a mixture of experts, when it is one
  RowMatrix& operator[](Linear l) { return linear[static_cast<std::size_t>(l)]; }
  const RowMatrix& operator[](Linear l) const { return linear[static_cast<std::size_t>(l)]; }
};

struct LlamaModel {
  LlamaConfig config;
  RowMatrix embedding;  ///< [vocab, hidden]
  std::vector<LlamaBlock> blocks;
  Eigen::VectorXf final_norm;
  RowMatrix output;  ///< [vocab, hidden]; empty when tied to the embedding
  const RowMatrix& lm_head() const { return config.tied_embeddings ? embedding : output; }
};

}  // namespace autoround
