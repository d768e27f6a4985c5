#pragma once
// Row-major float matrices and zero-copy views over what users already hold: Eigen
// matrices, xtensor arrays and raw row-major spans (like Eigen's Map/Ref, nothing is copied
// when the memory is already a contiguous row-major float block).
#include <Eigen/Core>
#include <span>
#include <string>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"

namespace autoround {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixView = Eigen::Map<const RowMatrix>;  // read-only view, row-major, contiguous
using MutableMatrixView = Eigen::Map<RowMatrix>;

inline MatrixView view(const RowMatrix& m) { return MatrixView(m.data(), m.rows(), m.cols()); }
inline MutableMatrixView mutable_view(RowMatrix& m) { return MutableMatrixView(m.data(), m.rows(), m.cols()); }

/// A raw row-major block: `view(std::span{data}, rows, cols)`.
inline MatrixView view(std::span<const float> data, Index rows, Index cols, const char* name = "matrix") {
  detail::require(rows >= 0 && cols >= 0 && static_cast<Index>(data.size()) == rows * cols,
                  std::string(name) + ": span holds " + std::to_string(data.size()) + " floats, shape " +
                      std::to_string(rows) + "x" + std::to_string(cols) + " needs " + std::to_string(rows * cols));
  return MatrixView(data.data(), rows, cols);
}

/// Any Eigen float matrix expression. Row-major contiguous storage is viewed in place; other
/// layouts (column-major, strided, expressions) are evaluated once into `storage`.
template <class Derived>
MatrixView view(const Eigen::MatrixBase<Derived>& m, RowMatrix& storage) {
  static_assert(std::is_same_v<typename Derived::Scalar, float>, "autoround::view: matrices must hold float");
  if constexpr (requires { m.derived().data(); m.derived().outerStride(); }) {
    if constexpr (static_cast<bool>(Derived::Flags & Eigen::RowMajorBit)) {
      if (m.derived().innerStride() == 1 && m.derived().outerStride() == m.cols())
        return MatrixView(m.derived().data(), m.rows(), m.cols());
    } else if (m.rows() == 1 || m.cols() == 1) {  // a vector is both layouts at once
      if (m.derived().innerStride() == 1) return MatrixView(m.derived().data(), m.rows(), m.cols());
    }
  }
  storage = m;
  return MatrixView(storage.data(), storage.rows(), storage.cols());
}

/// xtensor (or any container with `.shape()`, `.data()` and row-major layout): viewed in place.
/// Only 2-D row-major float containers are accepted; anything else is a compile error.
template <class XContainer>
  requires requires(const XContainer& x) {
    { x.shape() };
    { x.data() } -> std::convertible_to<const float*>;
    { x.dimension() } -> std::convertible_to<std::size_t>;
  }
MatrixView view(const XContainer& x, const char* name = "xtensor") {
  detail::require(x.dimension() == 2, std::string(name) + ": expected a 2-D array, got " +
                                          std::to_string(x.dimension()) + " dimensions");
  if constexpr (requires { x.strides(); }) {  // views with gaps would read the wrong floats
    const auto& strides = x.strides();
    detail::require((x.shape()[0] <= 1 || static_cast<std::size_t>(strides[0]) == x.shape()[1]) &&
                        (x.shape()[1] <= 1 || strides[1] == 1),
                    std::string(name) + ": expected a contiguous row-major array");
  }
  return MatrixView(x.data(), static_cast<Index>(x.shape()[0]), static_cast<Index>(x.shape()[1]));
}

}  // namespace autoround
