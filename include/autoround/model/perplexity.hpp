#pragma once
// Perplexity over non-overlapping windows of `context` tokens: every position but the last of a
// window predicts the next token; perplexity = exp(mean negative log-likelihood).
// Log-softmax is accumulated in double. WindowScoring::llama_perplexity(bos) scores as llama.cpp's
// llama-perplexity does (tools/perplexity: each window's first token replaced by BOS, only its
// second half scored), so that its figure and ours on the same GGUF file can be compared.
#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <vector>

#include "llama_forward.hpp"

namespace autoround {

/// Which positions of a window are scored, and what the window starts with.
struct WindowScoring {
  Index first_scored = 0;           ///< positions first_scored .. context - 2 predict the next token
  std::optional<std::int32_t> bos;  ///< replaces each window's first token
  /// llama-perplexity's: the second half of each window of `context`, after a BOS (`bos`: the
  /// vocabulary's, when it adds one; the text must then start with it too, as llama.cpp tokenizes).
  static WindowScoring llama_perplexity(Index context, std::optional<std::int32_t> bos) { return {context / 2, bos}; }
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;   ///< nats per predicted token
  Index tokens_scored = 0;
  Index windows = 0;
};

inline PerplexityResult perplexity(const LlamaModel& m, std::span<const std::int32_t> tokens, Index context,
                                   Index max_windows = 0, const WindowScoring& scoring = {}) {
  if (context < 2) throw Error("perplexity: context = " + std::to_string(context) + " must be at least 2");
  if (scoring.first_scored < 0 || scoring.first_scored > context - 2)
    throw Error("perplexity: the first scored position " + std::to_string(scoring.first_scored) + " is outside a window of " +
                std::to_string(context));
  Index windows = static_cast<Index>(tokens.size()) / context;
  if (max_windows > 0) windows = std::min(windows, max_windows);
  if (windows == 0)
    throw Error("perplexity: " + std::to_string(tokens.size()) + " tokens do not fill one window of " + std::to_string(context));
  // windows side by side through the blocks (weights packed once per batch of
  // forward_batch_rows), then each window's logits (vocab-wide: one window at a time bounds
  // their memory) with the rows' log-softmax in parallel, summed in order (deterministic)
  const Index batch = std::max<Index>(1, forward_batch_rows / context);
  double nll = 0;
  Index scored = 0;
  std::vector<double> row_nll(static_cast<std::size_t>(context - 1));
  RowMatrix logits;
  for (Index first = 0; first < windows; first += batch) {
    const Index n = std::min(batch, windows - first);
    std::vector<std::int32_t> chunk(tokens.begin() + first * context, tokens.begin() + (first + n) * context);
    if (scoring.bos)
      for (Index w = 0; w < n; ++w) chunk[static_cast<std::size_t>(w * context)] = *scoring.bos;
    const RowMatrix hidden = forward_hidden(m, chunk, context);
    for (Index w = 0; w < n; ++w) {
      logits.noalias() = hidden.middleRows(w * context, context) * m.lm_head().transpose();
      soft_cap_logits(logits, m.config);
      const auto window = std::span<const std::int32_t>(chunk).subspan(static_cast<std::size_t>(w * context), static_cast<std::size_t>(context));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
      for (Index t = scoring.first_scored; t < context - 1; ++t) {  // a window's last position predicts nothing
        const auto row = logits.row(t);
        const double max = row.maxCoeff();
        double sum = 0;
        for (Index v = 0; v < row.size(); ++v) sum += std::exp(static_cast<double>(row(v)) - max);
        row_nll[static_cast<std::size_t>(t)] = max + std::log(sum) - row(window[static_cast<std::size_t>(t + 1)]);
      }
      for (Index t = scoring.first_scored; t < context - 1; ++t) nll += row_nll[static_cast<std::size_t>(t)];
      scored += context - 1 - scoring.first_scored;
    }
  }
  const double mean = nll / static_cast<double>(scored);
  return {std::exp(mean), mean, scored, windows};
}

}  // namespace autoround
