// Eigen (any layout), xtensor and raw spans are accepted; row-major memory is not copied.
#include <doctest/doctest.h>

#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/tune/layer_tuner.hpp>
#include <vector>
#include <xtensor/xtensor.hpp>

namespace test_adapters {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("views share memory when the layout allows it") {
  RowMatrix m = RowMatrix::Random(3, 4), storage;
  CHECK(view(m, storage).data() == m.data());
  CHECK(storage.size() == 0);
  Eigen::MatrixXf col_major = m;
  const MatrixView copied = view(col_major, storage);
  CHECK(copied.data() == storage.data());
  CHECK(RowMatrix(copied) == m);

  xt::xtensor<float, 2> x = xt::zeros<float>({3, 4});
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 4; ++c) x(r, c) = m(r, c);
  const MatrixView xv = view(x);
  CHECK(xv.data() == x.data());
  CHECK(RowMatrix(xv) == m);

  std::vector<float> raw(m.data(), m.data() + m.size());
  CHECK(RowMatrix(view(std::span<const float>(raw), 3, 4)) == m);
  CHECK_THROWS_WITH_AS(view(std::span<const float>(raw), 5, 4, "inputs"),
                       doctest::Contains("inputs: span holds 12 floats"), Error);
}

TEST_CASE("the tuner takes Eigen and xtensor arguments directly, with the same result") {
  RowMatrix w = RowMatrix::Random(8, 32) * 0.05f, inputs = RowMatrix::Random(64, 32);
  TuneOptions o;
  o.iters = 20;
  o.seqlen = 8;
  const LayerTuner<IntQuantizer<4, 16, Asymmetric>> tuner(o);
  const auto from_views = tuner.tune(view(w), view(inputs));
  const Eigen::MatrixXf w_col = w, x_col = inputs;  // column-major: copied once
  const auto from_eigen = tuner.tune(w_col, x_col);
  xt::xtensor<float, 2> xw = xt::zeros<float>({8, 32}), xx = xt::zeros<float>({64, 32});
  std::copy(w.data(), w.data() + w.size(), xw.data());
  std::copy(inputs.data(), inputs.data() + inputs.size(), xx.data());
  const auto from_xtensor = tuner.tune(xw, xx);
  CHECK(from_eigen.codes == from_views.codes);
  CHECK(from_xtensor.codes == from_views.codes);
}
}  // namespace test_adapters
