#pragma once
// The CPU backend: Eigen's GEMM (multi-threaded through OpenMP when the build enables it) and an
// OpenMP loop with a static schedule, so results do not depend on timing: for a fixed thread
// count every run computes the same floats in the same order.
#include <Eigen/Core>
#include <algorithm>

#include "../core/matrix.hpp"
#include "backend.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace autoround {

struct Cpu {
  int thread_count = 0;  ///< 0: every hardware thread OpenMP offers

  int threads() const {
#if defined(_OPENMP)
    return thread_count > 0 ? thread_count : omp_get_max_threads();
#else
    return 1;
#endif
  }

  void matmul_nt(MatrixView x, MatrixView w, MutableMatrixView y) const {
    ThreadScope scope(threads());
    y.noalias() = x * w.transpose();
  }
  void matmul_tn(MatrixView x, MatrixView w, MutableMatrixView y) const {
    ThreadScope scope(threads());
    y.noalias() = x.transpose() * w;
  }

  template <class F>
  void parallel_for(Index n, F&& f) const {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads())
#endif
    for (Index i = 0; i < n; ++i) f(i);
  }

 private:
  // Eigen keeps its thread count globally; set ours for one GEMM and put the old one back.
  struct ThreadScope {
    int previous;
    explicit ThreadScope(int n) : previous(Eigen::nbThreads()) { Eigen::setNbThreads(n); }
    ~ThreadScope() { Eigen::setNbThreads(previous); }
    ThreadScope(const ThreadScope&) = delete;
    ThreadScope& operator=(const ThreadScope&) = delete;
  };
};

static_assert(HostBackend<Cpu>);

}  // namespace autoround
