#pragma once
// A model read lazily, one block at a time, from a memory-mapped file: what lets quantize_model
// stream a checkpoint far larger than host memory (tune/streaming_quantizer.hpp). Only the block
// being worked on is ever converted to float32; the embedding and the LM head are read by the
// rows a caller asks for (a Llama-3-8B LM head is 2.1 GB in float32).
// Implementations: GgufModelSource (gguf_source.hpp), HfModelSource (hf_loader.hpp).
#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "llama_model.hpp"

namespace autoround {

template <class S>
concept ModelSource = requires(const S s, Index b, std::span<const std::int32_t> tokens) {
  { s.config() } -> std::convertible_to<const LlamaConfig&>;
  { s.block(b) } -> std::same_as<LlamaBlock>;                  // block b in float32
  { s.embedding_rows(tokens) } -> std::same_as<RowMatrix>;     // [tokens, hidden]
  { s.embedding() } -> std::same_as<RowMatrix>;                // [vocab, hidden]
  { s.final_norm() } -> std::same_as<Eigen::VectorXf>;
  { s.output() } -> std::same_as<RowMatrix>;                   // [vocab, hidden]; empty when tied
  { s.output_rows(tokens) } -> std::same_as<RowMatrix>;        // [tokens, hidden] of the LM head (untied)
  { s.name() } -> std::convertible_to<std::string>;            // the file or directory, for errors
};

/// A source that also reads Gemma 4 E2B / E4B's per-layer embeddings (HfModelSource): the whole
/// table and projection (load_model), or a layer's slice of the table for some tokens and the
/// projection with its norm (what a block-by-block run makes each layer's inputs from).
template <class S>
concept PerLayerEmbeddingSource = requires(const S s, Index b, std::span<const std::int32_t> tokens) {
  { s.per_layer_embedding() } -> std::same_as<PerLayerEmbedding>;
  { s.per_layer_rows(tokens, b) } -> std::same_as<RowMatrix>;
  { s.per_layer_projection() } -> std::same_as<RowMatrix>;
  { s.per_layer_norm() } -> std::same_as<Eigen::VectorXf>;
};

/// The whole model in float32 (what load_llama does).
template <ModelSource S>
LlamaModel load_model(const S& source) {
  LlamaModel m;
  m.config = source.config();
  m.embedding = source.embedding();
  for (Index b = 0; b < m.config.layers; ++b) m.blocks.push_back(source.block(b));
  m.final_norm = source.final_norm();
  m.output = source.output();
  if (m.config.per_layer_input > 0) {
    if constexpr (PerLayerEmbeddingSource<S>) m.per_layer = source.per_layer_embedding();
    else throw Error(source.name() + ": per-layer embeddings (Gemma 4 E2B / E4B) are not read from this source");
  }
  return m;
}

/// Any ModelSource behind one type, for code that picks the source at run time (a GGUF file or a
/// Hugging Face directory) or passes it across a library boundary. Refers to `source`, which
/// must outlive it.
class AnyModelSource {
 public:
  template <ModelSource S>
  explicit AnyModelSource(const S& source)
      : config_(source.config()), name_(source.name()), block_([&source](Index b) { return source.block(b); }),
        rows_([&source](std::span<const std::int32_t> t) { return source.embedding_rows(t); }),
        embedding_([&source] { return source.embedding(); }), final_norm_([&source] { return source.final_norm(); }),
        output_([&source] { return source.output(); }),
        output_rows_([&source](std::span<const std::int32_t> t) { return source.output_rows(t); }) {
    if constexpr (PerLayerEmbeddingSource<S>) {
      per_layer_embedding_ = [&source] { return source.per_layer_embedding(); };
      per_layer_rows_ = [&source](std::span<const std::int32_t> t, Index b) { return source.per_layer_rows(t, b); };
      per_layer_projection_ = [&source] { return source.per_layer_projection(); };
      per_layer_norm_ = [&source] { return source.per_layer_norm(); };
    }
  }

  const LlamaConfig& config() const { return config_; }
  std::string name() const { return name_; }
  LlamaBlock block(Index b) const { return block_(b); }
  RowMatrix embedding_rows(std::span<const std::int32_t> tokens) const { return rows_(tokens); }
  RowMatrix embedding() const { return embedding_(); }
  Eigen::VectorXf final_norm() const { return final_norm_(); }
  RowMatrix output() const { return output_(); }
  RowMatrix output_rows(std::span<const std::int32_t> rows) const { return output_rows_(rows); }
  PerLayerEmbedding per_layer_embedding() const { return per_layer(per_layer_embedding_)(); }
  RowMatrix per_layer_rows(std::span<const std::int32_t> tokens, Index b) const { return per_layer(per_layer_rows_)(tokens, b); }
  RowMatrix per_layer_projection() const { return per_layer(per_layer_projection_)(); }
  Eigen::VectorXf per_layer_norm() const { return per_layer(per_layer_norm_)(); }

 private:
  template <class F>
  const F& per_layer(const F& f) const {
    if (!f) throw Error(name_ + ": per-layer embeddings (Gemma 4 E2B / E4B) are not read from this source");
    return f;
  }

  LlamaConfig config_;
  std::string name_;
  std::function<LlamaBlock(Index)> block_;
  std::function<RowMatrix(std::span<const std::int32_t>)> rows_;
  std::function<RowMatrix()> embedding_;
  std::function<Eigen::VectorXf()> final_norm_;
  std::function<RowMatrix()> output_;
  std::function<RowMatrix(std::span<const std::int32_t>)> output_rows_;
  std::function<PerLayerEmbedding()> per_layer_embedding_;
  std::function<RowMatrix(std::span<const std::int32_t>, Index)> per_layer_rows_;
  std::function<RowMatrix()> per_layer_projection_;
  std::function<Eigen::VectorXf()> per_layer_norm_;
};

static_assert(ModelSource<AnyModelSource> && PerLayerEmbeddingSource<AnyModelSource>);

namespace detail {
inline void check_tokens(std::span<const std::int32_t> tokens, Index vocab, const char* table = "the vocabulary") {
  for (std::size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= vocab)
      throw Error("token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) + " is outside " + table +
                  " of " + std::to_string(vocab));
}
}  // namespace detail

}  // namespace autoround
