#pragma once
// Which token sequences a calibration run uses.
//
// calibration_samples: the reference's rule for a corpus of documents (auto_round/
// calib_dataset.py: get_dataset over pile-10k): shuffle the documents with the seed, cut each to
// its first `seqlen` tokens, drop documents shorter than seqlen and degenerate ones (the window's
// last token filling more than half of it), keep the first nsamples.
// One approximation: the reference shuffles with Hugging Face datasets (numpy's PCG64 stream);
// we shuffle with Python's random.shuffle under the same seed (python_random.hpp): the same rule
// and distribution, not the same order.
//
// consecutive_windows: a single long token stream (a book, a token-id file) has no documents;
// it is cut into nsamples non-overlapping windows from the start.
//
// loss_masks: which positions of each sample the block loss counts (auto_round/calibration/llm.py
// `calib` marks the others -100): not the last position (it predicts nothing), not padding
// (tokens equal to the pad id; without a pad id, the run of repeats of the last token before it).
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "../tune/block_calibration.hpp"
#include "../tune/python_random.hpp"

namespace autoround {

using TokenSequence = std::vector<std::int32_t>;

inline std::vector<TokenSequence> calibration_samples(std::span<const TokenSequence> documents, Index nsamples, Index seqlen,
                                                      std::uint64_t seed = 42) {
  detail::require(nsamples > 0 && seqlen > 0, "calibration: nsamples and seqlen must be positive");
  std::vector<std::size_t> order(documents.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  PythonRandom(seed).shuffle(order);
  std::vector<TokenSequence> samples;
  for (std::size_t i : order) {
    if (static_cast<Index>(samples.size()) == nsamples) break;
    const TokenSequence& doc = documents[i];
    if (static_cast<Index>(doc.size()) < seqlen) continue;
    TokenSequence window(doc.begin(), doc.begin() + seqlen);
    if (seqlen > 2 && std::count(window.begin(), window.end(), window.back()) > seqlen / 2) continue;
    samples.push_back(std::move(window));
  }
  if (samples.empty())
    throw Error("calibration: none of the " + std::to_string(documents.size()) + " documents has " + std::to_string(seqlen) +
                " tokens (lower seqlen)");
  return samples;
}

inline std::vector<TokenSequence> consecutive_windows(std::span<const std::int32_t> tokens, Index nsamples, Index seqlen) {
  if (nsamples <= 0 || seqlen <= 0 || nsamples * seqlen > static_cast<Index>(tokens.size()))
    throw Error("calibration: nsamples = " + std::to_string(nsamples) + " x seqlen = " + std::to_string(seqlen) +
                " needs more than the " + std::to_string(tokens.size()) + " calibration tokens given");
  std::vector<TokenSequence> samples;
  for (Index s = 0; s < nsamples; ++s) {
    const auto first = tokens.begin() + s * seqlen;
    samples.emplace_back(first, first + seqlen);
  }
  return samples;
}

/// One loss mask per sample (1 = the position counts), by the reference's rule above.
inline std::vector<LossMask> loss_masks(std::span<const TokenSequence> samples, std::optional<std::int32_t> pad_token) {
  std::vector<LossMask> masks;
  masks.reserve(samples.size());
  for (const TokenSequence& ids : samples) {
    LossMask mask(ids.size(), 1.0f);
    if (ids.empty()) {
      masks.push_back(std::move(mask));
      continue;
    }
    if (pad_token) {
      for (std::size_t t = 0; t < ids.size(); ++t)
        if (ids[t] == *pad_token) mask[t] = 0.0f;
    } else {
      for (std::size_t t = ids.size() - 1; t-- > 0 && ids[t] == ids.back();) mask[t] = 0.0f;
    }
    mask.back() = 0.0f;
    masks.push_back(std::move(mask));
  }
  return masks;
}

}  // namespace autoround
