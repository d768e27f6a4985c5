// The library boundary of the CUDA build: a -march=native program (this test, as the autoround
// program) hands Eigen matrices to a library whose Eigen has no SIMD (device_side, compiled as
// the nvcc pipeline is), which frees and allocates them, and the program frees them again.
// Without one Eigen heap allocator on both sides (EIGEN_MALLOC_ALREADY_ALIGNED=0, CMakeLists.txt)
// this aborts with "double free or corruption" on an AVX/AVX-512 machine: Eigen's over-aligning
// allocator on one side, plain malloc on the other. No GPU needed.
#include <doctest/doctest.h>

#include <autoround/model/llama_model.hpp>
#include <random>

#include "eigen_boundary/device_side.hpp"
#include "support/random_model.hpp"

namespace test_eigen_boundary {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("Eigen matrices cross between -march=native code and the SIMD-less library") {
  std::mt19937 rng(3);
  for (int round = 0; round < 20; ++round) {
    LlamaModel model = test_models::small_random_model(rng);      // allocated here
    replace_weights_across_boundary(model);                       // freed and reallocated there
    CHECK(model.blocks[1][Linear::Down](3, 7) == 0.5f);
    model.blocks[0][Linear::Up] = RowMatrix::Zero(8, 8);          // theirs freed here
    model.blocks[1].attn_norm.resize(3);                          // and here
    CHECK(model.blocks[0][Linear::Up].sum() == 0.0f);
  }                                                               // the rest freed here
  MESSAGE("Eigen heap alignment in this program: " << EIGEN_DEFAULT_ALIGN_BYTES << " bytes");
}
}  // namespace test_eigen_boundary
