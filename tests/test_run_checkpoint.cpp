// RunCheckpoint (tune/run_checkpoint.hpp) and resumed streaming runs: a block's results read
// back exactly, another run's checkpoint refused, and a run interrupted after block k and
// resumed from its checkpoint gives what the uninterrupted run gives, bit for bit, without
// tuning the kept blocks again. Small random models: this checks the mechanism, not accuracy
// (cli_resume checks the program on the real model, killed with SIGKILL and SIGTERM).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "support/memory_source.hpp"
#include "support/random_model.hpp"

namespace test_run_checkpoint {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {

using test_models::MemorySource;

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) : path(fs::temp_directory_path() / ("autoround-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

template <WeightQuantizer Q>
QuantizedWeight<Q> random_result(QuantSpec spec, Index rows, Index cols, std::mt19937& rng) {
  QuantizedWeight<Q> q{Q(spec), GroupLayout(rows, cols, spec.group_size), {}, {}, {}, {}, {}, {}, {}};
  const auto groups = static_cast<std::size_t>(rows * q.layout.groups_per_row());
  for (Index i = 0; i < rows * cols; ++i) q.codes.push_back(static_cast<std::uint8_t>(rng() % (1u << spec.bits)));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::size_t g = 0; g < groups; ++g) {
    q.scales.push_back(u(rng));
    q.zeros.push_back(static_cast<std::int32_t>(rng() % 16));
    if (spec.super_group_size > 0) q.mins.push_back(u(rng));
  }
  if (spec.super_group_size > 0)
    for (std::size_t g = 0; g < groups / static_cast<std::size_t>(spec.super_group_size); ++g) {
      q.super_scales.push_back(u(rng));
      q.super_mins.push_back(u(rng));
    }
  q.stats = {int(rng() % 200), 0.1 + 1e-3 * u(rng), 1.0 / 3.0 + u(rng), int(rng() % 200), 12.345678901234567};
  return q;
}

template <WeightQuantizer Q>
void check_same(const QuantizedWeight<Q>& a, const QuantizedWeight<Q>& b) {
  CHECK(a.quantizer.spec() == b.quantizer.spec());
  CHECK(a.rows() == b.rows());
  CHECK(a.cols() == b.cols());
  CHECK(a.codes == b.codes);
  CHECK(a.scales == b.scales);
  CHECK(a.zeros == b.zeros);
  CHECK(a.mins == b.mins);
  CHECK(a.super_scales == b.super_scales);
  CHECK(a.super_mins == b.super_mins);
  CHECK(a.stats.steps_run == b.stats.steps_run);
  CHECK(a.stats.rtn_loss == b.stats.rtn_loss);
  CHECK(a.stats.best_loss == b.stats.best_loss);
  CHECK(a.stats.best_step == b.stats.best_step);
  CHECK(a.stats.seconds == b.stats.seconds);
}

}  // namespace

TEST_CASE("RunCheckpoint keeps a block's results, report and random state exactly") {
  TempDir dir("checkpoint-roundtrip");
  std::mt19937 rng(4);
  {
    FinishedBlock<DynamicIntQuantizer> block;
    block.results.resize(7);
    const QuantSpec specs[7] = {{2, 32, Asymmetric}, {3, 32, Symmetric}, {4, 64, Asymmetric}, {8, -1, Symmetric},
                                {4, 32, Symmetric},  {5, 128, Asymmetric}, {6, 16, Asymmetric}};
    for (std::size_t l = 0; l < 7; ++l)
      if (l != 3) block.results[l] = random_result<DynamicIntQuantizer>(specs[l], 8, l == 5 ? 200 : 96, rng);  // 200: a last group shorter
    block.report = {2, {10, 0.25, 0.125, 7, 1.5}, 6, 3.0000000000000004, 0.1, 2.7};
    PythonRandom random(42);
    for (int i = 0; i < 1000; ++i) random.next_u32();
    block.random = random.state();
    const RunCheckpoint<DynamicIntQuantizer> checkpoint(dir.path / "int", "run A\n", 3);
    checkpoint.save(2, block);
    const FinishedBlock<DynamicIntQuantizer> back = checkpoint.load(2);
    for (std::size_t l = 0; l < 7; ++l) {
      CAPTURE(l);
      REQUIRE(back.results[l].has_value() == block.results[l].has_value());
      if (block.results[l]) check_same(*back.results[l], *block.results[l]);
    }
    CHECK(back.report.block == 2);
    CHECK(back.report.quantized_layers == 6);
    CHECK(back.report.seconds == block.report.seconds);
    CHECK(back.report.steps_seconds == block.report.steps_seconds);
    CHECK(back.report.stats.best_loss == 0.125);
    CHECK(back.random == block.random);
    PythonRandom resumed(1);
    resumed.set_state(back.random);
    CHECK(resumed.next_u32() == random.next_u32());  // the stream continues where it was
  }
  {  // double quantization: mins and super-scales too
    FinishedBlock<DynamicDoubleQuantizer> block;
    block.results.resize(7);
    block.results[6] = random_result<DynamicDoubleQuantizer>(QuantSpec{2, 16, Asymmetric, 16, 4}, 4, 256, rng);
    const RunCheckpoint<DynamicDoubleQuantizer> checkpoint(dir.path / "dq", "run B\n", 1);
    checkpoint.save(0, block);
    check_same(*checkpoint.load(0).results[6], *block.results[6]);
  }
}

TEST_CASE("RunCheckpoint: another run's blocks are refused; only consecutive blocks count; a .tmp is ignored") {
  TempDir dir("checkpoint-guard");
  std::mt19937 rng(5);
  FinishedBlock<DynamicIntQuantizer> block;
  block.results.resize(7);
  block.results[0] = random_result<DynamicIntQuantizer>({4, 32, Asymmetric}, 4, 64, rng);
  {
    const RunCheckpoint<DynamicIntQuantizer> checkpoint(dir.path, "settings\niters 10\nseed 42\n", 5);
    for (Index b : {0, 1, 3}) {
      block.report.block = b;
      checkpoint.save(b, block);
    }
    std::ofstream(dir.path / "block-00002.safetensors.tmp") << "half a file";
  }
  const RunCheckpoint<DynamicIntQuantizer> again(dir.path, "settings\niters 10\nseed 42\n", 5);
  CHECK(again.finished() == 2);
  CHECK_THROWS_WITH_AS(RunCheckpoint<DynamicIntQuantizer>(dir.path, "settings\niters 20\nseed 42\n", 5),
                       doctest::Contains("it had \"iters 10\", this one has \"iters 20\""), Error);
  // two runs on one checkpoint at once: the second is refused while the first holds it
  CHECK_THROWS_WITH_AS(RunCheckpoint<DynamicIntQuantizer>(dir.path, "settings\niters 10\nseed 42\n", 5),
                       doctest::Contains("another run is using it"), Error);
  // a truncated block file is an error naming it, not a silent restart
  fs::resize_file(dir.path / "block-00001.safetensors", 20);
  CHECK_THROWS_WITH_AS(again.load(1), doctest::Contains("block-00001.safetensors"), Error);
}

TEST_CASE("a streaming run interrupted after a block and resumed from its checkpoint gives the uninterrupted run's results") {
  std::mt19937 rng(23);
  const LlamaModel model = test_models::small_random_model(rng, 3);
  const MemorySource source{&model};
  const std::vector<TokenSequence> samples = test_models::random_samples(5, 16, model.config.vocab, rng);
  for (const ActivationStreams streams : {ActivationStreams::Two, ActivationStreams::FullPrecision, ActivationStreams::Quantized}) {
    CAPTURE(static_cast<int>(streams));
    ModelQuantOptions options;
    options.spec = {2, 32, Asymmetric};
    options.tune.iters = 12;
    options.tune.batch_size = 2;  // 5 samples: the sampler's stream crosses blocks mid-permutation
    options.tune.clip_init = ClipInit::WeightedSearch;
    options.streams = streams;
    struct Seen {
      std::vector<LayerResults<>> results;
      std::vector<LlamaBlock> blocks;
      std::vector<BlockReport> reports;
      std::vector<Index> tuned;  // blocks whose steps ran
    };
    auto run = [&](Seen& seen, const auto& checkpoint, Index stop_after) {
      quantize_model_streaming(
          source, std::span<const TokenSequence>(samples), options,
          [&](Index, const LlamaBlock& block, const LayerResults<>& results) {
            seen.blocks.push_back(block);
            seen.results.push_back(results);
          },
          [&](const BlockReport& r, Index) {
            seen.reports.push_back(r);
            if (r.block == stop_after) throw std::runtime_error("interrupted");  // after the checkpoint kept it
          },
          [&](Index b, int, double) {
            if (seen.tuned.empty() || seen.tuned.back() != b) seen.tuned.push_back(b);
          },
          SignSGD<LinearDecay>{}, Cpu{}, checkpoint);
    };
    Seen whole;
    run(whole, NoCheckpoint<DynamicIntQuantizer>{}, -1);
    REQUIRE(whole.results.size() == 3);
    TempDir dir("resume-" + std::to_string(static_cast<int>(streams)));
    Seen first, resumed;
    CHECK_THROWS_WITH(run(first, RunCheckpoint<DynamicIntQuantizer>(dir.path, "test run\n", 3), 1), "interrupted");
    const RunCheckpoint<DynamicIntQuantizer> kept(dir.path, "test run\n", 3);
    CHECK(kept.finished() == 2);
    run(resumed, kept, -1);
    CHECK(resumed.tuned == std::vector<Index>{2});  // the kept blocks were not tuned again
    REQUIRE(resumed.results.size() == 3);
    REQUIRE(resumed.reports.size() == 3);
    for (std::size_t b = 0; b < 3; ++b) {
      CAPTURE(b);
      CHECK(resumed.blocks[b].attn_norm == whole.blocks[b].attn_norm);
      CHECK(resumed.reports[b].stats.best_loss == whole.reports[b].stats.best_loss);
      CHECK(resumed.reports[b].stats.best_step == whole.reports[b].stats.best_step);
      for (Linear l : all_linears) {
        const auto i = static_cast<std::size_t>(l);
        REQUIRE(resumed.results[b][i].has_value() == whole.results[b][i].has_value());
        if (!whole.results[b][i]) continue;
        CHECK(resumed.results[b][i]->codes == whole.results[b][i]->codes);
        CHECK(resumed.results[b][i]->scales == whole.results[b][i]->scales);
        CHECK(resumed.results[b][i]->zeros == whole.results[b][i]->zeros);
        CHECK(resumed.blocks[b][l].size() == 0);  // released for the sink: the results hold it
      }
    }
  }
}
}  // namespace test_run_checkpoint
