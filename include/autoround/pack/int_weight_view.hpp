#pragma once
// A non-owning, non-template view of integer-quantized weights (codes, scales, zeros in the
// QuantizedWeight layout), so that packers are compiled once rather than per quantizer type.
#include <cstdint>
#include <span>
#include <string>

#include "../core/error.hpp"
#include "../quantizer/group_layout.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "../quantizer/quantized_weight.hpp"

namespace autoround {

struct IntWeightView {
  int bits = 4;
  Symmetry symmetry = Asymmetric;
  GroupLayout layout{1, 1, 1};            ///< rows = out_features, cols = in_features
  std::span<const std::uint8_t> codes;    ///< [rows, cols]
  std::span<const float> scales;          ///< [rows, groups_per_row], fp16-representable
  std::span<const std::int32_t> zeros;    ///< [rows, groups_per_row]

  Index rows() const { return layout.rows(); }
  Index cols() const { return layout.cols(); }
  Index groups() const { return layout.groups_per_row(); }
  std::uint8_t code(Index r, Index c) const { return codes[static_cast<std::size_t>(r * cols() + c)]; }
  float scale(Index r, Index g) const { return scales[static_cast<std::size_t>(r * groups() + g)]; }
  std::int32_t zero(Index r, Index g) const { return zeros[static_cast<std::size_t>(r * groups() + g)]; }
};

/// Also a DoubleQuantizer's weights without a second level (its codes are IntQuantizer's).
template <WeightQuantizer Q>
IntWeightView int_view(const QuantizedWeight<Q>& q) {
  detail::require(q.mins.empty(), "QuantizedWeight: double-quantized weights (group mins) have no integer view");
  const auto groups = static_cast<std::size_t>(q.layout.group_count());
  detail::require(q.codes.size() == static_cast<std::size_t>(q.rows() * q.cols()) && q.scales.size() == groups &&
                      q.zeros.size() == groups,
                  "QuantizedWeight: codes/scales/zeros sizes do not match its layout");
  return {q.quantizer.bits(), q.quantizer.symmetry(), q.layout, q.codes, q.scales, q.zeros};
}

/// What every unpacker returns: codes/scales/zeros back in the QuantizedWeight layout.
inline QuantizedWeight<DynamicIntQuantizer> make_unpacked(int bits, Index group_size, Symmetry symmetry,
                                                          Index rows, Index cols) {
  const GroupLayout layout(rows, cols, static_cast<int>(group_size));
  QuantizedWeight<DynamicIntQuantizer> q{DynamicIntQuantizer(QuantSpec{bits, static_cast<int>(group_size), symmetry}),
                                         layout, {}, {}, {}, {}, {}, {}, {}};
  q.codes.resize(static_cast<std::size_t>(rows * cols));
  q.scales.resize(static_cast<std::size_t>(layout.group_count()));
  q.zeros.resize(static_cast<std::size_t>(layout.group_count()));
  return q;
}

}  // namespace autoround
