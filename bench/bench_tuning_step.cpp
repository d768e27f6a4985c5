// How close one AutoRound tuning step is to the cost of its two GEMMs.
// A step on a [out, in] layer with a batch of `tokens` rows does: fake-quantize the weight,
// diff = X (Wq - W)^T (GEMM 1), loss, grad = diff^T X (GEMM 2), the STE backward, SignSGD.
// The baseline runs GEMM 1 and GEMM 2 alone, with Eigen, on the same shapes, in the same binary.
// Weights and inputs are random: this is shape-only timing (accuracy is measured elsewhere).
//
//   bench_tuning_step [--benchmark_filter=...]   (default shape 4096 x 4096, 2048 tokens)
#include <benchmark/benchmark.h>

#include <autoround/autoround.hpp>
#include <cstdio>
#include <map>
#include <string>

using namespace autoround;

namespace {

struct Shape {
  Index out, in, tokens;
};
RowMatrix random_matrix(Index rows, Index cols, float scale) {
  RowMatrix m = RowMatrix::Random(rows, cols);
  return m * scale;
}

void BM_TuningStep(benchmark::State& state) {
  const Shape s{state.range(0), state.range(1), state.range(2)};
  const RowMatrix w = random_matrix(s.out, s.in, 0.05f), x = random_matrix(s.tokens, s.in, 1.0f);
  TuneOptions o;
  o.iters = 1 << 30;  // keep the learning rate away from 0 whatever the number of timed steps
  o.seqlen = s.tokens;
  o.batch_size = 1;
  using Q = IntQuantizer<4, 128, Asymmetric>;
  LayerTuningRun<Q, SignSGD<>, Cpu> run(o, Q{}, SignSGD<>{}, Cpu{}, view(w), view(x), nullptr, "bench");
  for (auto _ : state) benchmark::DoNotOptimize(run.step());
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * s.out * s.in * s.tokens * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_TwoGemms(benchmark::State& state) {
  const Shape s{state.range(0), state.range(1), state.range(2)};
  const RowMatrix w = random_matrix(s.out, s.in, 0.05f), x = random_matrix(s.tokens, s.in, 1.0f);
  RowMatrix diff(s.tokens, s.out), grad(s.out, s.in);
  for (auto _ : state) {
    diff.noalias() = x * w.transpose();
    grad.noalias() = diff.transpose() * x;
    benchmark::DoNotOptimize(grad.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * s.out * s.in * s.tokens * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Remember each run's time so main() can print step / GEMM ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> seconds;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs)
      if (r.run_type == Run::RT_Iteration) seconds[r.run_name.function_name + "/" + r.run_name.args] = r.GetAdjustedRealTime();
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

BENCHMARK(BM_TuningStep)->Args({4096, 4096, 2048})->Args({1536, 576, 1024})->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
BENCHMARK(BM_TwoGemms)->Args({4096, 4096, 2048})->Args({1536, 576, 1024})->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\n| out/in/tokens | tuning step / its two GEMMs |\n|---|---|\n");
  for (const auto& [name, step_time] : reporter.seconds) {
    if (name.rfind("BM_TuningStep/", 0) != 0) continue;
    const std::string args = name.substr(std::string("BM_TuningStep/").size());
    const auto gemm = reporter.seconds.find("BM_TwoGemms/" + args);
    if (gemm != reporter.seconds.end()) std::printf("| %s | %.3f |\n", args.c_str(), step_time / gemm->second);
  }
  benchmark::Shutdown();
}
