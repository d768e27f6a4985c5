// Bad input gets a clear error naming what is wrong.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <limits>

namespace test_bad_input {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("run-time configuration is validated, naming the parameter") {
  CHECK_THROWS_WITH_AS((DynamicIntQuantizer(QuantSpec{9, 128, Asymmetric})), "bits = 9: must be between 2 and 8", Error);
  CHECK_THROWS_WITH_AS((DynamicIntQuantizer(QuantSpec{1, 128, Asymmetric})), "bits = 1: must be between 2 and 8", Error);
  CHECK_THROWS_WITH_AS((DynamicIntQuantizer(QuantSpec{4, 0, Asymmetric})), doctest::Contains("group_size = 0"), Error);
  CHECK_THROWS_WITH_AS((IntQuantizer<4, Dynamic, Symmetric>(QuantSpec{3, 64, Symmetric})),
                       doctest::Contains("compile-time Bits = 4"), Error);
  TuneOptions o;
  o.iters = -1;
  CHECK_THROWS_WITH_AS((LayerTuner<IntQuantizer<4, 128, Asymmetric>>{o}), doctest::Contains("iters = -1"), Error);
}

TEST_CASE("shape mismatches and sample sizes") {
  const RowMatrix w = RowMatrix::Random(4, 16), x = RowMatrix::Random(10, 12);
  TuneOptions o;
  o.iters = 2;
  const LayerTuner<IntQuantizer<4, 8, Asymmetric>> tuner(o);
  CHECK_THROWS_WITH_AS(tuner.tune(view(w), view(x), "blk.0.attn_q"),
                       "blk.0.attn_q: calibration inputs have 12 features but the weight has 16 input features", Error);
  o.seqlen = 4;
  const RowMatrix x16 = RowMatrix::Random(10, 16);
  CHECK_THROWS_WITH_AS((LayerTuner<IntQuantizer<4, 8, Asymmetric>>(o).tune(view(w), view(x16), "fc")),
                       doctest::Contains("fc: 10 input rows are not a whole number of samples of seqlen = 4"), Error);
}

TEST_CASE("NaN and Inf in weights or inputs are reported with their position") {
  RowMatrix w = RowMatrix::Random(4, 16), x = RowMatrix::Random(8, 16);
  TuneOptions o;
  o.iters = 2;
  const LayerTuner<IntQuantizer<4, 8, Asymmetric>> tuner(o);
  w(2, 5) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(tuner.tune(view(w), view(x), "mlp.down"), "mlp.down.weight: element (2, 5) is NaN", Error);
  CHECK_THROWS_WITH_AS((quantize_rtn(IntQuantizer<4, 8, Asymmetric>{}, view(w), "w")), "w: element (2, 5) is NaN", Error);
  w(2, 5) = 0.0f;
  x(7, 15) = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(tuner.tune(view(w), view(x), "mlp.down"), "mlp.down.inputs: element (7, 15) is infinite", Error);
}

TEST_CASE("a zero-range group quantizes to zeros without dividing by zero") {
  RowMatrix w = RowMatrix::Random(2, 16);
  w.row(1).setZero();
  const auto q = quantize_rtn(IntQuantizer<4, 8, Symmetric>{}, view(w));
  CHECK(q.dequantize().row(1).isZero());
  CHECK(q.dequantize().allFinite());
}

TEST_CASE("a failed write names its reason, and an atomic write leaves nothing behind") {
  namespace fs = std::filesystem;
  const std::vector<std::byte> bytes(4096, std::byte{7});
  // /dev/full: every write fails as on a full disk
  OutputFile full("/dev/full");
  CHECK_THROWS_WITH_AS(full.write(bytes), "/dev/full: write failed: No space left on device", Error);
  // an atomic write whose .tmp lands on a full disk (a link to /dev/full): the reason, no output, no .tmp
  const fs::path dir = fs::temp_directory_path() / "autoround-test-full-disk";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_symlink("/dev/full", dir / "model.gguf.tmp");
  CHECK_THROWS_WITH_AS(write_file_atomically(dir / "model.gguf", bytes),
                       doctest::Contains("model.gguf.tmp: write failed: No space left on device"), Error);
  CHECK_FALSE(fs::exists(dir / "model.gguf"));
  CHECK_FALSE(fs::is_symlink(dir / "model.gguf.tmp"));
  // a directory that is not there
  CHECK_THROWS_WITH_AS(write_file_atomically(dir / "missing" / "model.gguf", bytes),
                       doctest::Contains("missing/model.gguf.tmp: cannot open for writing: No such file or directory"), Error);
  // the streaming GGUF writer says the same
  fs::create_symlink("/dev/full", dir / "streamed.gguf.tmp");
  GgufWriter layout;
  layout.set_string("general.name", "x");
  CHECK_THROWS_WITH_AS(GgufStreamWriter(dir / "streamed.gguf", layout),
                       doctest::Contains("streamed.gguf.tmp: write failed: No space left on device"), Error);
  fs::remove_all(dir);
}
}  // namespace test_bad_input
