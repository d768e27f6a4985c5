#pragma once
// How a [rows, cols] weight splits into groups: `group_size` consecutive input elements of one
// output row. When cols is not a multiple of the group size the reference pads each row with
// zeros to the next multiple; since wmin = min(w, 0) and wmax = max(w, 0), zero padding never
// changes a group's range, and padded outputs are dropped, so we treat the last group of a row
// as a shorter group instead of materialising the padding (bit-identical results).
#include <algorithm>
#include <string>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace autoround {

class GroupLayout {
 public:
  GroupLayout(Index rows, Index cols, int group_size) : rows_(rows), cols_(cols) {
    detail::require(rows > 0 && cols > 0, "weight shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                                              ": both dimensions must be positive");
    detail::require(group_size == PerChannel || group_size > 0,
                    "group_size = " + std::to_string(group_size) + ": must be positive or -1 (per channel)");
    // group_size -1, or a row shorter than one group, makes the whole row one group (as the reference)
    group_size_ = (group_size == PerChannel || group_size > cols) ? cols : group_size;
    groups_per_row_ = (cols + group_size_ - 1) / group_size_;
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index group_size() const { return group_size_; }  ///< effective size, padding included
  Index groups_per_row() const { return groups_per_row_; }
  Index group_count() const { return rows_ * groups_per_row_; }
  Index padded_cols() const { return groups_per_row_ * group_size_; }

  Index group_begin(Index g) const { return g * group_size_; }  ///< column where group g of a row starts
  Index group_length(Index g) const { return std::min(group_size_, cols_ - g * group_size_); }

 private:
  Index rows_, cols_, group_size_, groups_per_row_;
};

}  // namespace autoround
