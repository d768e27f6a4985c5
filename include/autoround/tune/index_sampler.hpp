#pragma once
// The reference's IndexSampler (auto_round/compressors/utils.py): a shuffled list of sample
// indices walked in order; when fewer than batch_size remain, the whole list is reshuffled and
// the walk restarts (the incomplete tail is dropped).
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "python_random.hpp"

namespace autoround {

class IndexSampler {
 public:
  /// Draws from its own random stream, seeded with `seed`.
  IndexSampler(Index nsamples, Index batch_size, std::uint64_t seed)
      : own_(seed), random_(&own_), batch_size_(batch_size) {
    init(nsamples);
  }
  /// Draws from `shared` (which must outlive the sampler): the reference's samplers all use
  /// Python's one global `random`, seeded once, so block b's minibatches continue the stream
  /// where block b-1's left it.
  IndexSampler(Index nsamples, Index batch_size, PythonRandom& shared) : random_(&shared), batch_size_(batch_size) {
    init(nsamples);
  }
  IndexSampler(const IndexSampler& other)
      : own_(other.own_), random_(other.random_ == &other.own_ ? &own_ : other.random_), indices_(other.indices_),
        batch_size_(other.batch_size_), position_(other.position_) {}
  IndexSampler& operator=(const IndexSampler&) = delete;

  std::span<const Index> next_batch() {
    if (position_ + batch_size_ > static_cast<Index>(indices_.size())) {
      random_->shuffle(indices_);
      position_ = 0;
    }
    std::span<const Index> batch(indices_.data() + position_, static_cast<std::size_t>(batch_size_));
    position_ += batch_size_;
    return batch;
  }

 private:
  void init(Index nsamples) {
    detail::require(batch_size_ > 0 && batch_size_ <= nsamples,
                    "batch_size_ = " + std::to_string(batch_size_) + ": must be in [1, nsamples = " +
                        std::to_string(nsamples) + "]");
    indices_.resize(static_cast<std::size_t>(nsamples));
    std::iota(indices_.begin(), indices_.end(), Index{0});
    random_->shuffle(indices_);
  }

  PythonRandom own_{0};
  PythonRandom* random_;
  std::vector<Index> indices_;
  Index batch_size_;
  Index position_ = 0;
};

}  // namespace autoround
