#pragma once
// Where the arithmetic of a tuning run happens: the backend policy of LayerTuner,
// LayerTuningRun, BlockTuningRun and quantize_model. The tuning algorithm (sampling, schedule,
// best step, results) is the same on every backend.
//
// Two kinds:
// - a HostBackend keeps every matrix in host memory; the generic run templates call its two
//   GEMMs and its parallel loop (Cpu);
// - a DeviceBackend keeps the run's state in its own memory; the runs are partial
//   specializations for it, with the same constructors and members (Cuda,
//   backend/cuda/cuda_runs.cuh), so user code switches backend by switching the type.
#include <concepts>

#include "../core/matrix.hpp"

namespace autoround {

namespace detail {
struct IndexCallback {
  void operator()(Index) const {}
};
}  // namespace detail

template <class B>
concept HostBackend = std::copy_constructible<B> &&
    requires(const B b, MatrixView x, MatrixView w, MutableMatrixView y, Index n, detail::IndexCallback f) {
      { b.matmul_nt(x, w, y) } -> std::same_as<void>;  // y = x * w^T   (forward: activations x weights)
      { b.matmul_tn(x, w, y) } -> std::same_as<void>;  // y = x^T * w   (backward: weight gradient)
      { b.parallel_for(n, f) } -> std::same_as<void>;  // f(i) for i in [0, n), any order
      { b.threads() } -> std::convertible_to<int>;
    };

template <class B>
concept DeviceBackend = std::copy_constructible<B> && requires { requires B::runs_on_device; };

template <class B>
concept Backend = HostBackend<B> || DeviceBackend<B>;

}  // namespace autoround
