#pragma once
// Perplexity over non-overlapping windows of `context` tokens: every position but the last of a
// window predicts the next token; perplexity = exp(mean negative log-likelihood).
// Log-softmax is accumulated in double.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

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
  // windows side by side in one forward (weights packed once per batch; forward_batch_rows bound
  // the logits' memory), the rows' log-softmax in parallel, summed in order (deterministic)
  const Index batch = std::max<Index>(1, forward_batch_rows / context);
  double nll = 0;
  Index scored = 0;
  for (Index first = 0; first < windows; first += batch) {
    const Index n = std::min(batch, windows - first);
    const auto chunk = tokens.subspan(static_cast<std::size_t>(first * context), static_cast<std::size_t>(n * context));
    const RowMatrix logits = forward_logits(m, chunk, context);
    std::vector<double> row_nll(static_cast<std::size_t>(n * (context - 1)));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (Index i = 0; i < n * (context - 1); ++i) {
      const Index r = (i / (context - 1)) * context + i % (context - 1);  // a window's last position predicts nothing
      const auto row = logits.row(r);
      const double max = row.maxCoeff();
      double sum = 0;
      for (Index v = 0; v < row.size(); ++v) sum += std::exp(static_cast<double>(row(v)) - max);
      row_nll[static_cast<std::size_t>(i)] = max + std::log(sum) - row(chunk[static_cast<std::size_t>(r + 1)]);
    }
    for (double x : row_nll) nll += x;
    scored += n * (context - 1);
  }
  const double mean = nll / static_cast<double>(scored);
  return {std::exp(mean), mean, scored, windows};
}

}  // namespace autoround
