#pragma once
// Where the arithmetic of a tuning step runs. The tuner's algorithm (sampling, schedule, best
// step) is the same on every backend; a backend supplies the two GEMMs of a step and a
// parallel loop for the element-wise quantize/dequantize work.
#include <concepts>

#include "../core/matrix.hpp"

namespace autoround {

namespace detail {
struct IndexCallback {
  void operator()(Index) const {}
};
}  // namespace detail

template <class B>
concept Backend = std::copy_constructible<B> &&
    requires(const B b, MatrixView x, MatrixView w, MutableMatrixView y, Index n, detail::IndexCallback f) {
      { b.matmul_nt(x, w, y) } -> std::same_as<void>;  // y = x * w^T   (forward: activations x weights)
      { b.matmul_tn(x, w, y) } -> std::same_as<void>;  // y = x^T * w   (backward: weight gradient)
      { b.parallel_for(n, f) } -> std::same_as<void>;  // f(i) for i in [0, n), any order
      { b.threads() } -> std::convertible_to<int>;
    };

}  // namespace autoround
