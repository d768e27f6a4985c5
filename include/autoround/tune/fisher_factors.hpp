#pragma once
// How much the model's loss rises when a weight matrix W becomes Q: the second-order estimate
//     ΔL ≈ ½ Σ_r,i F_r,i (W − Q)²_r,i
// with F the diagonal of the empirical Fisher information of the next-token cross-entropy on the
// calibration text, F_r,i = Σ_t (dL/dy_t,r · x_t,i)² over the tokens t (y = W x). Holding F for
// every weight costs the model's size again, so it is kept factored per layer (as K-FAC does):
//     F_r,i ≈ (Σ_t g_t,r²) (Σ_t x_t,i²) / tokens
// — the output gradients' and the inputs' second moments (the latter is llama.cpp's importance
// matrix), taken as independent over tokens: the approximation this estimate rests on.
// An embedding is looked up, not multiplied: its rows' F is kept exactly, per token id seen. The
// rows the calibration never looks up (most of a vocabulary, for a few thousand tokens) still
// carry loss on other text: Good–Turing estimates the share of tokens that are ids unseen in the
// sample as (ids seen once) / (tokens looked up), spread evenly over the unseen rows, each
// occurrence as sensitive as the mean observed one — a second approximation, for the embedding
// only (a tied LM head's share is measured at every position: its softmax touches every row).
//
// measure_fisher() walks a model from a ModelSource forward over the calibration samples, then
// backward from the LM head block by block (model/model_backward.hpp), in full precision, reading
// each block twice per batch (forward and backward) so that only one block is held at a time.
// Mixed-precision choices at a size budget are made from it (export/gguf_budget.hpp).
#include <array>
#include <map>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../model/calibration_samples.hpp"
#include "../model/llama_block.hpp"
#include "../model/model_backward.hpp"
#include "../model/model_source.hpp"

namespace autoround {

/// One weight matrix's factored Fisher diagonal: F_r,i ≈ out_sq_r · in_sq_i / tokens.
struct FisherFactors {
  Eigen::VectorXd out_sq;  ///< [out]: Σ_t (dL/dy_t,r)²
  Eigen::VectorXd in_sq;   ///< [in]: Σ_t x_t,i²
  Index tokens = 0;        ///< rows the sums ran over

  /// The estimated rise of the loss when `weight` [out, in] is replaced by `quantized`:
  /// ½ Σ_r out_sq_r Σ_i in_sq_i (w − q)²_r,i / tokens.
  double loss_rise(const RowMatrix& weight, const RowMatrix& quantized) const {
    detail::require(weight.rows() == out_sq.size() && weight.cols() == in_sq.size() && quantized.rows() == weight.rows() &&
                        quantized.cols() == weight.cols(),
                    "FisherFactors::loss_rise: a weight of " + std::to_string(weight.rows()) + " x " + std::to_string(weight.cols()) +
                        " against factors of " + std::to_string(out_sq.size()) + " x " + std::to_string(in_sq.size()));
    double total = 0;
    for (Index r = 0; r < weight.rows(); ++r) {
      double row = 0;
      for (Index i = 0; i < weight.cols(); ++i) {
        const double e = static_cast<double>(weight(r, i)) - static_cast<double>(quantized(r, i));
        row += in_sq[i] * e * e;
      }
      total += out_sq[r] * row;
    }
    return tokens > 0 ? 0.5 * total / static_cast<double>(tokens) : 0.0;
  }
};

/// The factored Fisher of every linear layer of a dense model, the LM head's, and the
/// embedding's rows that the calibration looks up.
struct ModelFisher {
  std::vector<std::array<FisherFactors, 7>> blocks;  ///< [block][Linear]
  FisherFactors head;                                ///< the LM head (the embedding, when tied)
  std::map<std::int32_t, Eigen::VectorXd> embedding_rows;  ///< token id -> Σ over its positions of (dL/d embedding row)²
  std::map<std::int32_t, Index> embedding_counts;          ///< token id -> its positions in the samples
  double loss = 0;                                   ///< the float model's mean next-token loss on the samples
  Index tokens = 0;                                  ///< positions scored

  const FisherFactors& of(Index block, Linear l) const { return blocks.at(static_cast<std::size_t>(block))[static_cast<std::size_t>(l)]; }

  /// The estimated rise of the loss when the embedding changes from `embedding` to `quantized`
  /// (both [vocab, hidden]): ½ Σ F (w − q)², F measured on the rows the calibration looked up and
  /// Good–Turing's estimate on the others (see above).
  double embedding_loss_rise(const RowMatrix& embedding, const RowMatrix& quantized) const {
    detail::require(embedding.rows() == quantized.rows() && embedding.cols() == quantized.cols(),
                    "ModelFisher::embedding_loss_rise: embeddings of different shapes");
    double total = 0;
    Eigen::VectorXd observed;  // Σ over every looked-up position of (dL/d row)²
    for (const auto& [id, f] : embedding_rows) {
      total += (f.array() * (embedding.row(id) - quantized.row(id)).transpose().cast<double>().array().square()).sum();
      if (observed.size() == 0) observed = Eigen::VectorXd::Zero(f.size());
      observed += f;
    }
    Index positions = 0, once = 0;
    for (const auto& [id, n] : embedding_counts) {
      positions += n;
      once += n == 1 ? 1 : 0;
    }
    const Index unseen = embedding.rows() - static_cast<Index>(embedding_rows.size());
    if (unseen > 0 && once > 0 && positions > 0) {
      // each unseen row: (once / unseen) expected positions, each with the mean observed F
      const Eigen::VectorXd f = observed * (static_cast<double>(once) / static_cast<double>(unseen) / static_cast<double>(positions));
      double rest = 0;
      for (Index r = 0; r < embedding.rows(); ++r)
        if (!embedding_rows.count(static_cast<std::int32_t>(r)))
          rest += (f.array() * (embedding.row(r) - quantized.row(r)).transpose().cast<double>().array().square()).sum();
      total += rest;
    }
    return 0.5 * total;
  }
};

namespace detail {
inline void add_squares(Eigen::VectorXd& sums, const RowMatrix& m) {
  const Eigen::VectorXd s = m.cast<double>().array().square().colwise().sum().transpose();
  if (sums.size() == 0) sums = Eigen::VectorXd::Zero(s.size());
  sums += s;
}
}  // namespace detail

/// The factored Fisher of `source`'s model on `samples` (equal lengths), `batch` samples per
/// forward. Dense LLaMA-family blocks (Gemma's norms and soft-caps included); a mixture of
/// experts is refused. Deterministic for a fixed thread count (sums in sample order).
template <ModelSource S>
ModelFisher measure_fisher(const S& source, std::span<const TokenSequence> samples, Index batch = 4) {
  const LlamaConfig& c = source.config();
  detail::require(!samples.empty(), source.name() + ": no calibration samples to measure the Fisher information on");
  detail::require(c.per_layer_input == 0 && c.kv_shared_layers == 0,
                  source.name() + ": sensitivities (--avg-bits, --gguf-budget) of a model with per-layer embeddings or shared key/value "
                                  "layers (Gemma 4 E2B / E4B) are not measured yet");
  const Index seqlen = static_cast<Index>(samples.front().size());
  for (const TokenSequence& s : samples)
    detail::require(static_cast<Index>(s.size()) == seqlen && seqlen >= 2,
                    source.name() + ": the Fisher information is measured on samples of one length (at least 2 tokens)");
  batch = std::max<Index>(1, batch);
  ModelFisher fisher;
  fisher.blocks.resize(static_cast<std::size_t>(c.layers));
  const Index samples_n = static_cast<Index>(samples.size());
  fisher.tokens = samples_n * (seqlen - 1);
  const double scale = 1.0 / static_cast<double>(fisher.tokens);
  const RowMatrix head = c.tied_embeddings ? source.embedding() : source.output();
  const Eigen::VectorXf final_norm = source.final_norm();
  std::vector<RowMatrix> inputs(static_cast<std::size_t>(c.layers));  // each block's input, for its backward
  BlockCache cache;
  BlockBackwardScratch scratch;
  std::array<RowMatrix, 7> grads;  // left empty: block_backward then skips the weights' gradients (a third of it)
  for (Index first = 0; first < samples_n; first += batch) {
    const Index n = std::min(batch, samples_n - first);
    std::vector<std::int32_t> ids;
    for (Index s = first; s < first + n; ++s) ids.insert(ids.end(), samples[static_cast<std::size_t>(s)].begin(), samples[static_cast<std::size_t>(s)].end());
    detail::check_tokens(ids, c.vocab);
    RowMatrix hidden = source.embedding_rows(ids);
    scale_embeddings(hidden, c);
    for (Index b = 0; b < c.layers; ++b) {
      const LlamaBlock block = source.block(b);
      detail::require(!block.moe, source.name() + ": block " + std::to_string(b) +
                                      " is a mixture of experts: its sensitivities are not measured yet (issue #25)");
      inputs[static_cast<std::size_t>(b)] = hidden;
      block_forward(block, c, hidden, nullptr, seqlen);
    }
    HeadGradient g = head_backward(hidden, ids, seqlen, final_norm, head, c, scale);
    fisher.loss += g.loss;
    if (fisher.head.out_sq.size() == 0) fisher.head.out_sq = Eigen::VectorXd::Zero(g.out_sq.size());
    if (fisher.head.in_sq.size() == 0) fisher.head.in_sq = Eigen::VectorXd::Zero(g.in_sq.size());
    fisher.head.out_sq += g.out_sq;
    fisher.head.in_sq += g.in_sq;
    fisher.head.tokens += static_cast<Index>(ids.size());
    RowMatrix d = std::move(g.d_hidden);
    for (Index b = c.layers - 1; b >= 0; --b) {
      const LlamaBlock block = source.block(b);
      const BlockWeights w = BlockWeights::of(block);
      RowMatrix x = inputs[static_cast<std::size_t>(b)];
      block_forward(w, c, x, &cache, seqlen);
      block_backward(w, c, cache, d, grads, &scratch);
      auto& factors = fisher.blocks[static_cast<std::size_t>(b)];
      for (Linear l : all_linears) {
        FisherFactors& f = factors[static_cast<std::size_t>(l)];
        detail::add_squares(f.out_sq, linear_output_gradient(l, w, d, scratch));
        detail::add_squares(f.in_sq, cache.of(l));
        f.tokens += static_cast<Index>(ids.size());
      }
      d = block_input_gradient(w, c, cache, scratch);
    }
    if (c.embedding_scale != 1.0f) d *= c.embedding_scale;  // h0 = scale · embedding row
    for (std::size_t t = 0; t < ids.size(); ++t) {
      Eigen::VectorXd& row = fisher.embedding_rows[ids[t]];
      ++fisher.embedding_counts[ids[t]];
      if (row.size() == 0) row = Eigen::VectorXd::Zero(c.hidden);
      row += d.row(static_cast<Index>(t)).transpose().cast<double>().array().square().matrix();
    }
  }
  return fisher;
}

}  // namespace autoround
