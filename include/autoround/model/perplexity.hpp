#pragma once
// Perplexity over non-overlapping windows of `context` tokens: every position but the last of a
// window predicts the next token; perplexity = exp(mean negative log-likelihood).
// Log-softmax is accumulated in double.
#include <cmath>
#include <span>

#include "llama_forward.hpp"

namespace autoround {

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;   ///< nats per predicted token
  Index tokens_scored = 0;
  Index windows = 0;
};

inline PerplexityResult perplexity(const LlamaModel& m, std::span<const std::int32_t> tokens, Index context,
                                   Index max_windows = 0) {
  if (context < 2) throw Error("perplexity: context = " + std::to_string(context) + " must be at least 2");
  Index windows = static_cast<Index>(tokens.size()) / context;
  if (max_windows > 0) windows = std::min(windows, max_windows);
  if (windows == 0)
    throw Error("perplexity: " + std::to_string(tokens.size()) + " tokens do not fill one window of " + std::to_string(context));
  double nll = 0;
  Index scored = 0;
  for (Index w = 0; w < windows; ++w) {
    const auto window = tokens.subspan(static_cast<std::size_t>(w * context), static_cast<std::size_t>(context));
    const RowMatrix logits = forward_logits(m, window);
    for (Index t = 0; t + 1 < context; ++t) {
      const auto row = logits.row(t);
      const double max = row.maxCoeff();
      double sum = 0;
      for (Index v = 0; v < row.size(); ++v) sum += std::exp(static_cast<double>(row(v)) - max);
      nll += max + std::log(sum) - row(window[static_cast<std::size_t>(t + 1)]);
      ++scored;
    }
  }
  const double mean = nll / static_cast<double>(scored);
  return {std::exp(mean), mean, scored, windows};
}

}  // namespace autoround
