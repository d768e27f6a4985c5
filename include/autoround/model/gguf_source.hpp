#pragma once
// A LLaMA-family model in a GGUF file (llama.cpp's names: token_embd, blk.N.attn_q ...,
// output_norm, output), read block by block from the memory-mapped file; any tensor type the
// reader dequantizes (F32, F16, BF16, Q4_0 ... Q8_0, Q2_K ... Q6_K). qwen3moe, qwen2moe, glm4moe
// (GLM-4.5: dense leading blocks, q/k/v biases, q/k norms, partial NEOX RoPE) and Mixtral (llama
// with experts) load with LlamaBlock::moe (model/gguf_moe.hpp). phi3 (fused attn_qkv and ffn_up,
// LongRoPE, partial rotary) loads split into the seven linears. gpt-oss (GPT-OSS: q/k/v/o biases,
// attention sinks, YaRN as llama.cpp computes it, even layers sliding, biased router and experts,
// MXFP4 experts as released) loads with its experts. deepseek2 (DeepSeek-V3: latent attention from
// attn_q_a / attn_q_b / attn_kv_a_mqa and kv_b put back together from llama.cpp's attn_k_b and
// attn_v_b, or a legacy file's attn_kv_b; YaRN and the score scale as llama.cpp computes them;
// GLM's MoE) loads with LlamaBlock::mla. gemma3 and gemma2 load with LlamaConfig's Gemma settings as llama.cpp's graphs
// compute them (norm weights stored as 1 + w by its converter; llama.cpp's sliding-window
// patterns, local RoPE base and attention scales); gemma4 (its full layers' own head size and KV
// heads, keys as values, v_norm, proportional RoPE, layer_output_scale; the 26B-A4B's experts
// beside the dense MLP: MoeFeedForward::beside_mlp) too.
#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <string>

#include "../core/error.hpp"
#include "../format/gguf_reader.hpp"
#include "gguf_moe.hpp"
#include "llama_model.hpp"
#include "model_source.hpp"

namespace autoround {

class GgufModelSource {
 public:
  explicit GgufModelSource(const std::string& path) : file_(path) { read_config(); }

  const LlamaConfig& config() const { return config_; }
  const GgufFile& file() const { return file_; }
  std::string name() const { return file_.path(); }

  LlamaBlock block(Index b) const {
    detail::require(b >= 0 && b < config_.layers, name() + ": no block " + std::to_string(b));
    const LlamaConfig& c = config_;
    LlamaBlock block;
    const std::string prefix = "blk." + std::to_string(b) + ".";
    const bool glm = c.model_type == "glm4moe", gpt_oss = c.model_type == "gpt-oss", gemma4 = c.model_type == "gemma4";
    const LlamaConfig layer = layer_config(c, b);  // (gemma4's full layers: their own head size and KV heads; E2B's double-wide MLPs)
    block.values_from_keys = c.values_from_keys(c.is_sliding(b));
    block.kv_shared = c.kv_shared(b);  // (gemma4 E2B / E4B: no attn_k / attn_v; a converted release may hold unused ones)
    if (gemma4 && !block.kv_shared && (file_.find_tensor(prefix + "attn_v.weight") != nullptr) == block.values_from_keys)
      throw Error(name() + ": " + prefix + "attn_v.weight: gemma4's full layers must all have it or all lack it (keys as values), "
                  "its sliding layers must have it");
    const bool sparse = moe_ && moe_->sparse[static_cast<std::size_t>(b)];
    // phi3: attn_qkv holds q, k and v (rows [Q | K | V]), ffn_up gate and up (rows [gate | up])
    const bool fused_qkv = file_.find_tensor(prefix + "attn_qkv.weight") != nullptr, fused_gate_up = c.model_type == "phi3";
    if (c.latent_attention()) read_latent_attention(prefix, block);
    for (Linear l : all_linears) {
      if (sparse && !gemma4 && (l == Linear::Gate || l == Linear::Up || l == Linear::Down)) continue;  // the experts instead
      if (c.latent_attention() && l != Linear::Output && static_cast<int>(l) < 4) continue;  // read above
      if (fused_qkv && (l == Linear::Query || l == Linear::Key || l == Linear::Value)) continue;
      if (fused_gate_up && (l == Linear::Gate || l == Linear::Up)) continue;
      if (l == Linear::Value && block.values_from_keys) continue;  // gemma4's full layers: V is attn_k's output
      if ((l == Linear::Key || l == Linear::Value) && block.kv_shared) continue;
      const auto [rows, cols] = linear_shape(layer, l);
      block[l] = load(prefix + gguf_name(l) + ".weight", rows, cols);
    }
    const auto split = [&](const std::string& tensor, std::initializer_list<Linear> parts) {
      Index rows = 0;
      for (Linear l : parts) rows += linear_shape(c, l).first;
      const RowMatrix fused = load(prefix + tensor, rows, c.hidden);
      Index first = 0;
      for (Linear l : parts) {
        const Index n = linear_shape(c, l).first;
        block[l] = fused.middleRows(first, n);
        first += n;
      }
    };
    if (fused_qkv) split("attn_qkv.weight", {Linear::Query, Linear::Key, Linear::Value});
    if (fused_gate_up) split("ffn_up.weight", {Linear::Gate, Linear::Up});
    if (sparse) block.moe = MoeFeedForward{moe_->spec, load_gguf_moe(file_, *moe_, b, c.hidden), {}};
    // q/k/v biases: Qwen2's and GPT-OSS's; GLM's where its converter wrote them (attention_bias)
    if (c.model_type == "qwen2" || c.model_type == "qwen2moe" || gpt_oss || (glm && file_.find_tensor(prefix + "attn_q.bias")))
      for (int j = 0; j < 3; ++j) {
        const Linear l = all_linears[static_cast<std::size_t>(j)];
        block.qkv_bias[static_cast<std::size_t>(j)] = load_vector(prefix + gguf_name(l) + ".bias", linear_shape(c, l).first);
      }
    if (c.model_type == "qwen3" || c.model_type == "qwen3moe" || c.model_type == "gemma3" || gemma4 ||
        (glm && file_.find_tensor(prefix + "attn_q_norm.weight"))) {
      block.q_norm = load_vector(prefix + "attn_q_norm.weight", layer.head_dim);
      if (!block.kv_shared) block.k_norm = load_vector(prefix + "attn_k_norm.weight", layer.head_dim);
    }
    if (gemma4) block.layer_scalar = load_vector(prefix + "layer_output_scale.weight", 1)(0);
    if (c.per_layer_input > 0)  // gemma4 E2B / E4B: the per-layer input's branch
      block.per_layer = PerLayerBranch{load(prefix + "inp_gate.weight", c.per_layer_input, c.hidden),
                                       load(prefix + "proj.weight", c.hidden, c.per_layer_input), load_vector(prefix + "post_norm.weight", c.hidden)};
    if (gpt_oss) {  // o_proj's bias and a sink logit per head
      block.output_bias = load_vector(prefix + "attn_output.bias", c.hidden);
      block.sinks = load_vector(prefix + "attn_sinks.weight", c.heads);
    }
    block.attn_norm = load_vector(prefix + "attn_norm.weight", c.hidden);
    // glm4moe's and gpt-oss's converters map the norm before the MLP (post_attention_layernorm) to post_attention_norm (deepseek2's to ffn_norm)
    block.ffn_norm = load_vector(prefix + (glm || gpt_oss ? "post_attention_norm.weight" : "ffn_norm.weight"), c.hidden);
    if (c.model_type == "gemma3" || c.model_type == "gemma2" || gemma4) {  // sandwich norms
      block.post_attn_norm = load_vector(prefix + "post_attention_norm.weight", c.hidden);
      block.post_ffn_norm = load_vector(prefix + "post_ffw_norm.weight", c.hidden);
    }
    if (sparse && gemma4)  // the experts beside the MLP: their input's norm, each branch's output norm, the router's input scale
      block.moe->beside_mlp = ExpertsBesideMlp{load_vector(prefix + "pre_ffw_norm_2.weight", c.hidden), load_vector(prefix + "post_ffw_norm_1.weight", c.hidden),
                                               load_vector(prefix + "post_ffw_norm_2.weight", c.hidden), load_vector(prefix + "ffn_gate_inp.scale", c.hidden)};
    block.sliding = c.is_sliding(b);
    return block;
  }

  /// The embedding rows of `tokens`, dequantizing only those rows (a row of a GGUF tensor is a
  /// whole number of blocks of its type).
  RowMatrix embedding_rows(std::span<const std::int32_t> tokens) const { return rows_of("token_embd.weight", tokens); }
  /// Rows of the (untied) LM head, the same way.
  RowMatrix output_rows(std::span<const std::int32_t> rows) const {
    detail::require(!config_.tied_embeddings, name() + ": the LM head is tied to the embedding");
    return rows_of("output.weight", rows);
  }
  RowMatrix embedding() const { return load("token_embd.weight", config_.vocab, config_.hidden); }
  Eigen::VectorXf final_norm() const { return load_vector("output_norm.weight", config_.hidden); }
  RowMatrix output() const { return config_.tied_embeddings ? RowMatrix() : load("output.weight", config_.vocab, config_.hidden); }

  /// gemma4 E2B / E4B's per-layer embedding (PerLayerEmbeddingSource): per_layer_token_embd (ne
  /// {layers · P, vocab}: a token's row holds every layer's P values, layer-major, stored unscaled),
  /// per_layer_model_proj (ne {hidden, layers · P}) and per_layer_proj_norm, as Hugging Face holds them.
  PerLayerEmbedding per_layer_embedding() const {
    detail::require(config_.per_layer_input > 0, name() + ": the model has no per-layer embeddings");
    return {load("per_layer_token_embd.weight", config_.per_layer_vocab, config_.layers * config_.per_layer_input), per_layer_projection(),
            per_layer_norm()};
  }
  RowMatrix per_layer_projection() const {
    return load("per_layer_model_proj.weight", config_.layers * config_.per_layer_input, config_.hidden);
  }
  Eigen::VectorXf per_layer_norm() const { return load_vector("per_layer_proj_norm.weight", config_.per_layer_input); }
  /// Layer `layer`'s P columns of the table, the rows of `tokens`, dequantizing only those blocks
  /// (P is a whole number of the type's blocks: llama.cpp's types for it are).
  RowMatrix per_layer_rows(std::span<const std::int32_t> tokens, Index layer) const {
    detail::check_tokens(tokens, config_.per_layer_vocab, "the per-layer embedding table");
    const Index p = config_.per_layer_input;
    return table_rows("per_layer_token_embd.weight", tokens, config_.per_layer_vocab, config_.layers * p, layer * p, p,
                      "[per-layer vocab, layers · embedding_length_per_layer_input]");
  }

 private:
  RowMatrix rows_of(const std::string& tensor, std::span<const std::int32_t> tokens) const {
    detail::check_tokens(tokens, config_.vocab);
    return table_rows(tensor, tokens, config_.vocab, config_.hidden, 0, config_.hidden, "[vocab, hidden]");
  }
  /// Columns [first, first + count) of the rows `tokens` (checked by the caller) of a table [rows,
  /// cols], dequantizing only their blocks: read, not mapped (MappedFile::copy), since the rows lie
  /// at random over the table.
  RowMatrix table_rows(const std::string& tensor, std::span<const std::int32_t> tokens, Index rows, Index cols, Index first,
                       Index count, const char* shape) const {
    const GgufTensor& t = file_.tensor(tensor);
    if (t.rows() != rows || t.cols() != cols) throw Error(name() + ": tensor '" + tensor + "' is not " + shape);
    const ggml::TypeTraits traits = ggml::traits(t.type);
    if (static_cast<std::size_t>(first) % traits.block_weights != 0 || static_cast<std::size_t>(count) % traits.block_weights != 0)
      throw Error(name() + ": tensor '" + tensor + "': its type's blocks do not divide a slice of " + std::to_string(count) + " values");
    const std::size_t row_bytes = t.data.size() / static_cast<std::size_t>(t.rows());
    const std::size_t offset = static_cast<std::size_t>(first) / traits.block_weights * traits.block_bytes;
    const std::size_t bytes = static_cast<std::size_t>(count) / traits.block_weights * traits.block_bytes;
    RowMatrix h(static_cast<Index>(tokens.size()), count);
    std::vector<std::byte> slice(bytes);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      file_.copy(t.data.subspan(static_cast<std::size_t>(tokens[i]) * row_bytes + offset, bytes), slice);
      ggml::dequantize(t.type, slice, std::span<float>(h.data() + static_cast<Index>(i) * count, static_cast<std::size_t>(count)));
    }
    return h;
  }
  RowMatrix load(const std::string& tensor, Index rows, Index cols) const {
    const GgufTensor& t = file_.tensor(tensor);
    if (t.rows() != rows || t.cols() != cols)
      throw Error(name() + ": tensor '" + tensor + "' is " + std::to_string(t.rows()) + "x" + std::to_string(t.cols()) +
                  ", expected " + std::to_string(rows) + "x" + std::to_string(cols));
    RowMatrix m = file_.to_float(t);
    file_.release(t);  // only the block being worked on stays in memory
    return m;
  }
  Eigen::VectorXf load_vector(const std::string& tensor, Index n) const {
    const RowMatrix v = load(tensor, 1, n);
    return v.row(0).transpose();
  }

  void read_config() {
    const GgufFile& file = file_;
    const std::string path = file.path();
    const std::string arch = file.get_string("general.architecture");
    if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "qwen3moe" && arch != "qwen2moe" && arch != "glm4moe" &&
        arch != "gemma3" && arch != "gemma2" && arch != "gemma4" && arch != "phi3" && arch != "gpt-oss" && arch != "deepseek2")
      throw Error(path + ": architecture '" + arch +
                  "' is not supported (llama, qwen2, qwen3, qwen3moe, qwen2moe, glm4moe, gpt-oss, deepseek2, gemma3, gemma2, gemma4, phi3)");
    // experts (qwen3moe, qwen2moe, glm4moe, gpt-oss, deepseek2, Mixtral as llama with experts): model/gguf_moe.hpp
    if (arch == "qwen3moe" || arch == "qwen2moe" || arch == "glm4moe" || arch == "gpt-oss" || arch == "deepseek2" ||
        ((arch == "llama" || arch == "gemma4") && file.find(arch + ".expert_count") && file.get_uint(arch + ".expert_count") > 0))
      moe_ = gguf_moe_layout(file);
    LlamaConfig& c = config_;
    if (moe_) c.experts = moe_->experts;
    c.layers = gguf_forward_blocks(file, arch);  // (glm4moe's MTP blocks are not part of it)
    c.hidden = static_cast<Index>(file.get_uint(arch + ".embedding_length"));
    // a MoE file may leave out the dense size (its blocks have none); a dense one must say it
    const GgufValue* ff = file.find(arch + ".feed_forward_length");
    if (ff && ff->kind == GgufValue::Kind::Array) {  // gemma4 E2B: one width per layer (the kv-shared layers' double): read_gemma4 checks them
      if (arch != "gemma4" || ff->array.empty()) throw Error(path + ": " + arch + ".feed_forward_length: one width per layer is read for gemma4 only");
      for (const GgufValue& e : ff->array)
        layer_widths_.push_back(e.kind == GgufValue::Kind::Signed ? static_cast<Index>(e.i) : e.kind == GgufValue::Kind::Unsigned ? static_cast<Index>(e.u) : Index{-1});
      c.intermediate = layer_widths_[0];
    } else {
      c.intermediate = moe_ && !ff ? 0 : static_cast<Index>(file.get_uint(arch + ".feed_forward_length"));
    }
    c.heads = static_cast<Index>(file.get_uint(arch + ".attention.head_count"));
    if (arch == "gemma4") read_sliding_pattern(arch, 0);  // (its KV heads and head sizes differ by layer type)
    c.kv_heads = file.find(arch + ".attention.head_count_kv") ? kv_heads_of(arch) : c.heads;
    if (arch == "deepseek2") c.kv_heads = c.heads;  // head_count_kv 1: the latent is one "KV head" (MQA) in llama.cpp's absorbed graph
    if (c.heads <= 0 || c.kv_heads <= 0 || c.hidden % c.heads != 0 || c.heads % c.kv_heads != 0)
      throw Error(path + ": inconsistent head counts (" + std::to_string(c.heads) + " heads, " + std::to_string(c.kv_heads) +
                  " kv heads, hidden " + std::to_string(c.hidden) + ")");
    c.head_dim = file.find(arch + ".attention.key_length") ? static_cast<Index>(file.get_uint(arch + ".attention.key_length"))
                                                           : c.hidden / c.heads;
    if (file.find(arch + ".rope.freq_base")) c.rope_theta = static_cast<float>(file.get_float(arch + ".rope.freq_base"));
    if ((arch == "glm4moe" || arch == "phi3") && file.find(arch + ".rope.dimension_count")) {  // partial rotary: NEOX pairs within the first n_rot dimensions
      const auto rot = static_cast<Index>(file.get_uint(arch + ".rope.dimension_count"));
      if (rot <= 0 || rot > c.head_dim || rot % 2 != 0)
        throw Error(path + ": " + arch + ".rope.dimension_count " + std::to_string(rot) + " is not an even count up to the head size");
      if (rot < c.head_dim) c.rotary_dims = rot;
    }
    c.rms_eps = static_cast<float>(file.get_float(arch + ".attention.layer_norm_rms_epsilon"));
    c.model_type = arch;
    // llama.cpp's converter permutes LLaMA's q/k rows for adjacent-pair RoPE; Qwen2 keeps the
    // Hugging Face layout and uses the half-split ("NEOX") pairing.
    c.rope_style = arch == "llama" ? RopeStyle::AdjacentPairs : RopeStyle::HalfSplit;
    const std::string scaling = file.find(arch + ".rope.scaling.type") ? file.get_string(arch + ".rope.scaling.type") : "none";
    if (scaling == "linear") {
      c.rope_divisors.assign(static_cast<std::size_t>(c.head_dim / 2), static_cast<float>(file.get_float(arch + ".rope.scaling.factor")));
    } else if (scaling == "yarn") {
      // as llama.cpp computes YaRN (ggml's rope_yarn; llama-context.cpp's attn_factor): the
      // correction range floored / ceiled (transformers' truncate = true, whatever the checkpoint
      // said: GPT-OSS's truncate = false parts from it on the pairs inside the range), betas 32 and 1
      // (the {arch}.rope.scaling.yarn_beta_* keys are read by llama.cpp for other archs only), cos and
      // sin × (0.1 ln factor + 1) × rope.scaling.attn_factor
      const double factor = file.get_float(arch + ".rope.scaling.factor");
      const std::string original = arch + ".rope.scaling.original_context_length";
      detail::require(file.find(original) != nullptr, path + ": YaRN RoPE without " + original);
      c.rope_divisors = rope_yarn_divisors(c.rope_theta, c.rotary(), factor, 32, 1, static_cast<double>(file.get_uint(original)), true);
      c.rope_attention_factor = rope_yarn_attention_factor(factor);
      if (file.find(arch + ".rope.scaling.attn_factor")) c.rope_attention_factor *= static_cast<float>(file.get_float(arch + ".rope.scaling.attn_factor"));
    } else if (scaling != "none") {
      throw Error(path + ": RoPE scaling '" + scaling + "' is not supported (linear, yarn; llama3 comes as rope_freqs.weight)");
    }
    if (arch == "gemma4") read_gemma4();
    if (const GgufTensor* freqs = file.find_tensor("rope_freqs.weight")) {  // llama3 scaling, precomputed (gemma4: its full layers')
      const Index pairs = (c.full_head_dim > 0 ? c.full_head_dim : c.head_dim) / 2;
      if (freqs->element_count != static_cast<std::uint64_t>(pairs))
        throw Error(path + ": rope_freqs.weight has " + std::to_string(freqs->element_count) + " values, expected " + std::to_string(pairs));
      const RowMatrix f = file.to_float(*freqs);
      c.rope_divisors.assign(f.data(), f.data() + f.size());
    }
    if (arch == "phi3") read_phi3();
    if (arch == "deepseek2") read_deepseek2();
    if (arch == "gpt-oss") read_sliding_pattern(arch, 2);  // even layers slide, odd ones attend to everything
    const GgufTensor& embedding = file.tensor("token_embd.weight");
    if (embedding.cols() != c.hidden)
      throw Error(path + ": token_embd.weight has " + std::to_string(embedding.cols()) + " columns, expected " +
                  std::to_string(c.hidden));
    c.vocab = embedding.rows();
    c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
    if (arch == "gemma3" || arch == "gemma2" || arch == "gemma4") read_gemma(arch);
  }

  /// {arch}.attention.head_count_kv: one count, or (gemma4) one per layer, where the sliding layers
  /// share one count and the full layers another (LlamaConfig::full_kv_heads).
  Index kv_heads_of(const std::string& arch) {
    const GgufFile& file = file_;
    LlamaConfig& c = config_;
    const std::string key = arch + ".attention.head_count_kv";
    const GgufValue* v = file.find(key);
    if (v->kind != GgufValue::Kind::Array) return static_cast<Index>(file.get_uint(key));
    if (arch != "gemma4" || v->array.size() != static_cast<std::size_t>(c.layers))
      throw Error(file.path() + ": " + key + ": one count per layer is read for gemma4 only, " + std::to_string(c.layers) + " of them");
    Index sliding = 0, full = 0;
    for (std::size_t i = 0; i < v->array.size(); ++i) {
      const GgufValue& e = v->array[i];
      const auto n = e.kind == GgufValue::Kind::Signed ? static_cast<Index>(e.i) : e.kind == GgufValue::Kind::Unsigned ? static_cast<Index>(e.u) : Index{-1};
      Index& kind = c.is_sliding(static_cast<Index>(i)) ? sliding : full;
      if (n <= 0 || (kind != 0 && kind != n))
        throw Error(file.path() + ": " + key + ": layer " + std::to_string(i) + "'s count " + std::to_string(n) +
                    " differs from the other layers of its kind (sliding or full)");
      kind = n;
    }
    if (sliding == 0) sliding = full;
    if (full != sliding) c.full_kv_heads = full;
    return sliding;
  }

  /// Gemma 4 as llama.cpp's gemma4 graph computes it (src/models/gemma4.cpp): the full layers'
  /// head size attention.key_length, the sliding layers' key_length_swa; V = attn_k's output where
  /// a full layer has no attn_v (attention_k_eq_v), an RMSNorm without weight on V, scores × 1,
  /// proportional RoPE on the full layers by rope_freqs.weight (1e30: the pair does not turn),
  /// norms as stored (its converter adds no 1), each layer's output × layer_output_scale; the
  /// 26B-A4B's experts beside the MLP (gemma4.expert_count: model/gguf_moe.hpp). Per-layer
  /// embeddings (E2B / E4B) and shared KV layers are refused by name.
  void read_gemma4() {
    const GgufFile& file = file_;
    LlamaConfig& c = config_;
    const auto count = [&](const std::string& key) { return file.find("gemma4." + key) ? static_cast<Index>(file.get_uint("gemma4." + key)) : Index{0}; };
    // E2B / E4B: per-layer embeddings (per_layer_token_embd, per_layer_model_proj, per_layer_proj_norm;
    // per layer inp_gate, proj, post_norm) and the last shared_kv_layers layers without attn_k / attn_v
    c.per_layer_input = count("embedding_length_per_layer_input");
    if (c.per_layer_input > 0) c.per_layer_vocab = file_.tensor("per_layer_token_embd.weight").rows();
    c.kv_shared_layers = count("attention.shared_kv_layers");
    if (c.kv_shared_layers < 0 || c.kv_shared_layers >= c.layers)
      throw Error(file.path() + ": gemma4.attention.shared_kv_layers is out of range");
    // llama.cpp's donors are fixed (src/llama-model.cpp: a shared sliding layer takes the keys of
    // layer n − 2, a full one of n − 1, n the first shared): read where they are transformers' (the
    // last earlier layer of the same kind), as in the released E2B / E4B
    const Index first_shared = c.layers - c.kv_shared_layers;
    for (Index l = first_shared; c.kv_shared_layers > 0 && l < c.layers; ++l)
      if (first_shared < 2 || c.kv_donor(l) != first_shared - (c.is_sliding(l) ? 2 : 1))
        throw Error(file.path() + ": gemma4.attention.shared_kv_layers: layer " + std::to_string(l) +
                    "'s keys and values would come from another layer in llama.cpp than in transformers (the last two layers "
                    "before the shared ones must be sliding, then full)");
    if (!layer_widths_.empty()) {  // a width per layer: the kv-shared layers' twice the others' (use_double_wide_mlp)
      c.double_wide_mlp = c.kv_shared_layers > 0 && layer_widths_.back() == 2 * c.intermediate;
      for (Index l = 0; l < c.layers; ++l)
        if (static_cast<std::size_t>(l) >= layer_widths_.size() || layer_widths_[static_cast<std::size_t>(l)] != c.layer_intermediate(l))
          throw Error(file.path() + ": gemma4.feed_forward_length: layer " + std::to_string(l) +
                      "'s width is not the others' (or, in a kv-shared layer, twice theirs)");
    }
    const Index full = count("attention.key_length"), swa = count("attention.key_length_swa");
    if (full <= 0 || swa <= 0 || full % 2 != 0 || swa % 2 != 0 || count("attention.value_length") != full || count("attention.value_length_swa") != swa)
      throw Error(file.path() + ": gemma4 needs even attention.key_length / key_length_swa equal to value_length / value_length_swa");
    c.head_dim = swa;
    if (full != swa) c.full_head_dim = full;
    c.value_norm = true;
    const Index first_full = static_cast<Index>(std::find(c.sliding.begin(), c.sliding.end(), false) - c.sliding.begin());
    c.full_values_from_keys = first_full < c.layers && !file.find_tensor("blk." + std::to_string(first_full) + ".attn_v.weight");
  }

  /// Gemma as llama.cpp's gemma2/gemma3 graphs compute it: embeddings × √hidden, GeGLU, queries
  /// scaled by 1/√head_dim (1/√(hidden/heads) for the 27B models: llama.cpp tells them by their
  /// layer count, 46 and 62), soft-capping (gemma2: 50 and 30 unless the file says otherwise),
  /// sliding-window layers by {arch}.attention.sliding_window_pattern (llama.cpp's default: a full
  /// layer every 6th (gemma3) or 2nd (gemma2), the rest sliding) with their own RoPE base
  /// ({arch}.rope.freq_base_swa; gemma3: 10000, unscaled; gemma2: the full layers' base).
  void read_gemma(const std::string& arch) {
    const GgufFile& file = file_;
    LlamaConfig& c = config_;
    const bool g4 = arch == "gemma4", g3 = arch == "gemma3" || g4;
    c.activation = MlpActivation::GeluTanh;
    c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
    const bool big = !g4 && c.layers == (g3 ? 62 : 46);
    c.attention_scale = g4 ? 1.0f : 1.0f / std::sqrt(static_cast<float>(big ? c.hidden / c.heads : c.head_dim));
    const auto number = [&](const std::string& key, float fallback) {
      return file.find(key) ? static_cast<float>(file.get_float(key)) : fallback;
    };
    c.attention_softcap = g3 ? 0.0f : number(arch + ".attn_logit_softcapping", 50.0f);
    c.logit_softcap = number(arch + ".final_logit_softcapping", g3 ? 0.0f : 30.0f);
    if (!g4) read_sliding_pattern(arch, g3 ? 6 : 2, g3 ? 0 : 4096);  // (gemma4's: read first, in read_config)
    c.sliding_rope_theta = number(arch + ".rope.freq_base_swa", g3 ? 10000.0f : 0.0f);  // 0: gemma2's sliding layers rotate as its full ones
  }

  /// Phi-3 as llama.cpp's phi3 graph computes it: LongRoPE's per-pair divisors from
  /// rope_factors_short / rope_factors_long (the long ones past
  /// phi3.rope.scaling.original_context_length tokens, as transformers switches by the sequence's
  /// length; llama.cpp by its context size: the same for windows up to that length), cos and sin ×
  /// phi3.rope.scaling.attn_factor, full causal attention.
  void read_phi3() {
    const GgufFile& file = file_;
    LlamaConfig& c = config_;
    const GgufTensor* short_factors = file.find_tensor("rope_factors_short.weight");
    const GgufTensor* long_factors = file.find_tensor("rope_factors_long.weight");
    if (short_factors || long_factors) {
      const auto pairs = static_cast<std::uint64_t>(c.rotary() / 2);
      for (const GgufTensor* t : {short_factors, long_factors})
        if (!t || t->element_count != pairs)
          throw Error(file.path() + ": LongRoPE needs rope_factors_short.weight and rope_factors_long.weight of " + std::to_string(pairs) +
                      " values (one per rotated pair)");
      const RowMatrix s = file.to_float(*short_factors), l = file.to_float(*long_factors);
      c.rope_divisors.assign(s.data(), s.data() + s.size());
      c.rope_long_divisors.assign(l.data(), l.data() + l.size());
      const std::string original = "phi3.rope.scaling.original_context_length";
      detail::require(file.find(original) != nullptr, file.path() + ": LongRoPE factors without " + original);
      c.rope_long_after = static_cast<Index>(file.get_uint(original));
    }
    if (file.find("phi3.rope.scaling.attn_factor")) c.rope_attention_factor = static_cast<float>(file.get_float("phi3.rope.scaling.attn_factor"));
    // phi3.attention.sliding_window is read and set aside: llama.cpp computes phi3 with full causal
    // attention ("Phi SWA is currently disabled", its PR #13676), and the file is what it runs
  }

  /// DeepSeek-V3 as llama.cpp's deepseek2 graph computes it: attention.q_lora_rank (required: the
  /// lite files without query compression are not read), kv_lora_rank, key_length_mla − the roped
  /// dimensions (rope.dimension_count) per head for q·k without RoPE, value_length_mla (legacy files
  /// without the _mla keys: key_length / value_length); RoPE on adjacent pairs (LLAMA_ROPE_TYPE_NORM,
  /// no permutation in its converter); YaRN's factors as llama-context.cpp and deepseek2.cpp compute
  /// them from rope.scaling.yarn_log_multiplier (m = mscale_all_dim = key / 0.1; llama.cpp assumes
  /// mscale = 1, or m where m ≠ 1): cos and sin × A = [m(f, ms) / m(f, m), or m(f, 1) without the key]
  /// × rope.scaling.attn_factor, scores × (A (1 + 0.1 m ln f))² / √(qk_nope + qk_rope), with
  /// m(f, x) = 0.1 x ln f + 1. (transformers' cos/sin factor is m(f, mscale) / m(f, mscale_all_dim)
  /// with the checkpoint's own mscale: the same for DeepSeek-V3's mscale = mscale_all_dim = 1.)
  /// The latent norms use the model's epsilon.
  void read_deepseek2() {
    const GgufFile& file = file_;
    LlamaConfig& c = config_;
    const std::string a = "deepseek2.";
    const auto count = [&](const std::string& key) { return static_cast<Index>(file.get_uint(a + key)); };
    if (!file.find(a + "attention.q_lora_rank"))
      throw Error(file.path() + ": deepseek2 without attention.q_lora_rank (no query compression: DeepSeek-V2-Lite's layout) is not supported");
    c.q_lora_rank = count("attention.q_lora_rank");
    c.kv_lora_rank = count("attention.kv_lora_rank");
    c.head_dim = count("rope.dimension_count");
    const bool mla = file.find(a + "attention.key_length_mla") && file.find(a + "attention.value_length_mla");
    c.qk_nope_dim = count(mla ? "attention.key_length_mla" : "attention.key_length") - c.head_dim;
    c.v_head_dim = count(mla ? "attention.value_length_mla" : "attention.value_length");
    if (c.q_lora_rank <= 0 || c.kv_lora_rank <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 || c.qk_nope_dim <= 0 || c.v_head_dim <= 0)
      throw Error(file.path() + ": inconsistent latent attention sizes (q_lora_rank, kv_lora_rank, rope.dimension_count even, key/value lengths)");
    c.latent_norm_eps = c.rms_eps;
    c.rope_style = RopeStyle::AdjacentPairs;
    c.rotary_dims = 0;
    const std::string scaling = file.find(a + "rope.scaling.type") ? file.get_string(a + "rope.scaling.type") : "none";
    const double key_factor = file.find(a + "rope.scaling.attn_factor") ? file.get_float(a + "rope.scaling.attn_factor") : 1.0;
    double cos_factor = key_factor, log_mul = 0;
    const double f = scaling == "yarn" ? file.get_float(a + "rope.scaling.factor") : 1.0;
    const auto m = [&](double x) { return f <= 1 ? 1.0 : 0.1 * x * std::log(f) + 1.0; };
    if (scaling == "yarn") {
      c.rope_divisors = rope_yarn_divisors(c.rope_theta, c.head_dim, f, 32, 1,
                                           static_cast<double>(file.get_uint(a + "rope.scaling.original_context_length")), true);
      if (file.find(a + "rope.scaling.yarn_log_multiplier")) {
        log_mul = file.get_float(a + "rope.scaling.yarn_log_multiplier") / 0.1;
        cos_factor = m(log_mul != 1 ? log_mul : 1.0) / m(log_mul) * key_factor;
      } else {
        cos_factor = m(1.0) * key_factor;
      }
    }
    c.rope_attention_factor = static_cast<float>(cos_factor);
    const double mscale = cos_factor * (f <= 1 ? 1.0 : 1.0 + 0.1 * log_mul * std::log(f));
    c.attention_scale = static_cast<float>(mscale * mscale / std::sqrt(static_cast<double>(c.qk_head_dim())));
  }

  /// A deepseek2 block's attention: q_a, q_b, kv_a as stored; kv_b = per head [key rows | value
  /// rows] from attn_k_b (ne {qk_nope, kv_lora, heads}: kv_b transposed per head) and attn_v_b
  /// (ne {kv_lora, v_head, heads}), as llama.cpp's converter split it, or a legacy attn_kv_b.
  void read_latent_attention(const std::string& prefix, LlamaBlock& block) const {
    const LlamaConfig& c = config_;
    const Index heads = c.heads, dn = c.qk_nope_dim, dv = c.v_head_dim, rank = c.kv_lora_rank;
    LatentAttention a;
    a.query_a = load(prefix + "attn_q_a.weight", c.q_lora_rank, c.hidden);
    a.query_a_norm = load_vector(prefix + "attn_q_a_norm.weight", c.q_lora_rank);
    a.kv_a_norm = load_vector(prefix + "attn_kv_a_norm.weight", rank);
    block.mla = std::move(a);
    block[Linear::Query] = load(prefix + "attn_q_b.weight", heads * c.qk_head_dim(), c.q_lora_rank);
    block[Linear::Key] = load(prefix + "attn_kv_a_mqa.weight", rank + c.head_dim, c.hidden);
    if (file_.find_tensor(prefix + "attn_kv_b.weight")) {
      block[Linear::Value] = load(prefix + "attn_kv_b.weight", heads * (dn + dv), rank);
      return;
    }
    const RowMatrix k_b = load(prefix + "attn_k_b.weight", heads * rank, dn);  // row h·rank + c, column d
    const RowMatrix v_b = load(prefix + "attn_v_b.weight", heads * dv, rank);  // row h·dv + j, column c
    RowMatrix& kv_b = block[Linear::Value];
    kv_b.resize(heads * (dn + dv), rank);
    for (Index h = 0; h < heads; ++h) {
      kv_b.middleRows(h * (dn + dv), dn) = k_b.middleRows(h * rank, rank).transpose();
      kv_b.middleRows(h * (dn + dv) + dn, dv) = v_b.middleRows(h * dv, dv);
    }
  }

  /// Sliding-window layers as llama.cpp's load_swa_pattern sets them: {arch}.attention.sliding_window
  /// (required where `window` < 0, else `window` when absent) and {arch}.attention.sliding_window_pattern
  /// (one bool per layer, or n: a layer slides unless it is every n-th), else `pattern`; a key is
  /// visible iff 0 <= query − key < window.
  void read_sliding_pattern(const std::string& arch, Index pattern, Index window = -1) {
    const GgufFile& file = file_;
    LlamaConfig& c = config_;
    const std::string window_key = arch + ".attention.sliding_window";
    c.sliding_window = window < 0 || file.find(window_key) ? static_cast<Index>(file.get_uint(window_key)) : window;
    c.sliding.assign(static_cast<std::size_t>(c.layers), false);
    if (c.sliding_window <= 0) return;
    const std::string key = arch + ".attention.sliding_window_pattern";
    const GgufValue* v = file.find(key);
    if (v && v->kind == GgufValue::Kind::Array) {
      if (v->array.size() != static_cast<std::size_t>(c.layers) || v->element_type != GgufType::Bool)
        throw Error(file.path() + ": " + key + " is not one bool per layer");
      for (std::size_t i = 0; i < v->array.size(); ++i) c.sliding[i] = v->array[i].b;
      return;
    }
    if (v) pattern = static_cast<Index>(file.get_uint(key));
    for (Index i = 0; i < c.layers; ++i) c.sliding[static_cast<std::size_t>(i)] = pattern == 0 || i % pattern < pattern - 1;
  }

  GgufFile file_;
  LlamaConfig config_;
  std::optional<MoeLayout> moe_;  // every block's MLP is a mixture of experts
  std::vector<Index> layer_widths_;  // gemma4 E2B: feed_forward_length per layer (empty: one for all)
};

static_assert(ModelSource<GgufModelSource>);

/// Load a llama-architecture GGUF file, dequantizing every tensor to float32.
inline LlamaModel load_llama_gguf(const std::string& path) { return load_model(GgufModelSource(path)); }

}  // namespace autoround
