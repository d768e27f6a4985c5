#pragma once
// How a [rows, cols] weight splits into groups: `group_size` consecutive input elements of one
// output row. When cols is not a multiple of the group size the reference pads each row with
// zeros to the next multiple; since wmin = min(w, 0) and wmax = max(w, 0), zero padding never
// changes a group's range, and padded outputs are dropped, so we treat the last group of a row
// as a shorter group instead of materialising the padding (bit-identical results).
// A group may also span `group_rows` consecutive rows (a tile: FP8_BLOCK's 128 x 128 blocks, the
// reference's group_size (128, 128)); its index is then (row / group_rows, column group), the
// last band of rows shorter when rows is not a multiple (the reference pads with zeros there too).
#include <algorithm>
#include <string>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace autoround {

class GroupLayout {
 public:
  GroupLayout(Index rows, Index cols, int group_size, int group_rows = 1) : rows_(rows), cols_(cols), group_rows_(group_rows) {
    detail::require(rows > 0 && cols > 0, "weight shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                                              ": both dimensions must be positive");
    detail::require(group_size == PerChannel || group_size > 0,
                    "group_size = " + std::to_string(group_size) + ": must be positive or -1 (per channel)");
    detail::require(group_rows > 0, "group_rows = " + std::to_string(group_rows) + ": must be positive");
    // group_size -1, or a row shorter than one group, makes the whole row one group (as the reference)
    group_size_ = (group_size == PerChannel || group_size > cols) ? cols : group_size;
    groups_per_row_ = (cols + group_size_ - 1) / group_size_;
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index group_size() const { return group_size_; }  ///< effective size, padding included
  Index groups_per_row() const { return groups_per_row_; }
  Index group_rows() const { return group_rows_; }  ///< rows one group spans (1: a run of one row)
  Index row_bands() const { return (rows_ + group_rows_ - 1) / group_rows_; }
  Index group_count() const { return row_bands() * groups_per_row_; }
  /// The group of row r's g-th run of columns, [row_bands, groups_per_row] row-major.
  Index group_index(Index r, Index g) const { return (r / group_rows_) * groups_per_row_ + g; }
  Index padded_cols() const { return groups_per_row_ * group_size_; }

  Index group_begin(Index g) const { return g * group_size_; }  ///< column where group g of a row starts
  Index group_length(Index g) const { return std::min(group_size_, cols_ - g * group_size_); }

 private:
  Index rows_, cols_, group_rows_, group_size_, groups_per_row_;
};

/// The groups a quantizer makes of a [rows, cols] weight: its group_size, and its group_rows()
/// where it has one (FloatQuantizer's FP8_BLOCK tiles), else one row.
template <class Q>
GroupLayout group_layout_for(const Q& quantizer, Index rows, Index cols) {
  if constexpr (requires { quantizer.group_rows(); })
    return GroupLayout(rows, cols, quantizer.group_size(), quantizer.group_rows());
  else
    return GroupLayout(rows, cols, quantizer.group_size());
}

}  // namespace autoround
