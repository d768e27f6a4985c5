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
  IndexSampler(Index nsamples, Index batch_size, std::uint64_t seed) : random_(seed), batch_size_(batch_size) {
    detail::require(batch_size > 0 && batch_size <= nsamples,
                    "batch_size = " + std::to_string(batch_size) + ": must be in [1, nsamples = " +
                        std::to_string(nsamples) + "]");
    indices_.resize(static_cast<std::size_t>(nsamples));
    std::iota(indices_.begin(), indices_.end(), Index{0});
    random_.shuffle(indices_);
  }

  std::span<const Index> next_batch() {
    if (position_ + batch_size_ > static_cast<Index>(indices_.size())) {
      random_.shuffle(indices_);
      position_ = 0;
    }
    std::span<const Index> batch(indices_.data() + position_, static_cast<std::size_t>(batch_size_));
    position_ += batch_size_;
    return batch;
  }

 private:
  PythonRandom random_;
  std::vector<Index> indices_;
  Index batch_size_;
  Index position_ = 0;
};

}  // namespace autoround
