#pragma once
// Gemma 4 E2B / E4B's per-layer inputs: what each layer reads beside the hidden state, made from
// the tokens alone (transformers 5.17 Gemma4TextModel.get_per_layer_inputs / project_per_layer_inputs;
// llama.cpp's gemma4 graph computes the same):
//   ple_l = (RMSNorm(x0 · projection_lᵀ · hidden^−½; norm) + table[token]_l · √P) · 2^−½
// x0 the token's scaled embedding (the block stream's start), _l layer l's slice of P columns of
// the table ([vocab, layers · P], layer-major) and of P rows of the projection ([layers · P, hidden]).
// The constants are float32, as transformers multiplies a float32 model by Python floats.
#include <cmath>
#include <span>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "block_math.hpp"
#include "llama_model.hpp"

namespace autoround {

/// Layer `layer`'s per-layer inputs [tokens, P] from the tokens' scaled embeddings `x0`
/// [tokens, hidden] and their rows of the table's slice for that layer `table_rows` [tokens, P].
inline RowMatrix per_layer_input(const RowMatrix& x0, const RowMatrix& table_rows, const PerLayerEmbedding& e, const LlamaConfig& c,
                                 Index layer) {
  const Index p = c.per_layer_input;
  detail::require(p > 0 && table_rows.cols() == p && table_rows.rows() == x0.rows(), "per-layer input: the table rows are not [tokens, P]");
  detail::require(e.projection.rows() == c.layers * p && e.projection.cols() == c.hidden && e.norm.size() == p,
                  "per-layer input: per_layer_model_projection is not [layers · P, hidden] or its norm not [P]");
  RowMatrix projected;
  projected.noalias() = x0 * e.projection.middleRows(layer * p, p).transpose();
  projected *= 1.0f / std::sqrt(static_cast<float>(c.hidden));
  RowMatrix ple = detail::rms_norm(projected, e.norm, c.rms_eps);
  ple += table_rows * std::sqrt(static_cast<float>(p));
  ple *= static_cast<float>(1.0 / std::sqrt(2.0));
  return ple;
}

/// The table's slice for layer `layer`, the rows of `tokens` ([tokens, P]).
inline RowMatrix per_layer_table_rows(const PerLayerEmbedding& e, const LlamaConfig& c, std::span<const std::int32_t> tokens, Index layer) {
  const Index p = c.per_layer_input;
  RowMatrix rows(static_cast<Index>(tokens.size()), p);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= e.table.rows())
      throw Error("token id " + std::to_string(tokens[t]) + " is outside the per-layer embedding table of " + std::to_string(e.table.rows()) + " rows");
    rows.row(static_cast<Index>(t)) = e.table.row(tokens[t]).segment(layer * p, p);
  }
  return rows;
}

}  // namespace autoround
