// Packing throughput of every export format, in GB/s of fp32 weights in (rows x cols x 4
// bytes, whatever the packer actually reads), against a plain memcpy of those fp32 bytes in the
// same run. Random weights, rounded to W4G32 sym (a scheme every format holds), and to Q4_K's
// double-quantized scheme for the tuned k-quant encoder: shape-only timing.
//
//   bench_packing [--benchmark_filter=...]   (4096 x 4096 weights)
#include <benchmark/benchmark.h>

#include <autoround/autoround.hpp>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

using namespace autoround;

namespace {

constexpr Index kRows = 4096, kCols = 4096;

const RowMatrix& weights() {
  static const RowMatrix w = RowMatrix::Random(kRows, kCols) * 0.05f;
  return w;
}
const QuantizedWeight<DynamicIntQuantizer>& quantized() {
  static const auto q = quantize_rtn(DynamicIntQuantizer({4, 32, Symmetric}), view(weights()));
  return q;
}

void report_bytes(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kRows * kCols * 4);
}

void BM_Memcpy(benchmark::State& state) {
  std::vector<float> out(static_cast<std::size_t>(kRows * kCols));
  for (auto _ : state) {
    std::memcpy(out.data(), weights().data(), out.size() * sizeof(float));
    benchmark::DoNotOptimize(out.data());
  }
  report_bytes(state);
}
void BM_AutoRound(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(pack_gptq(quantized(), GptqZeros::Stored).qweight.data());
  report_bytes(state);
}
void BM_AutoGptq(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(pack_gptq(quantized(), GptqZeros::MinusOne, true).qweight.data());
  report_bytes(state);
}
void BM_AutoAwq(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(pack_awq(quantized()).qweight.data());
  report_bytes(state);
}
void BM_GgufQ4_0Tuned(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ggml::encode_tuned(ggml::Type::Q4_0, int_view(quantized())).data());
  report_bytes(state);
}
const QuantizedWeight<Q4KQuantizer>& quantized_q4_k() {
  static const auto q = quantize_rtn(Q4KQuantizer{}, view(weights()));
  return q;
}
void BM_GgufQ4_KTuned(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ggml::encode_tuned(ggml::Type::Q4_K, double_quant_view(quantized_q4_k())).data());
  report_bytes(state);
}
void BM_GgufQuantize(benchmark::State& state) {
  const auto type = static_cast<ggml::Type>(state.range(0));
  const std::span<const float> x(weights().data(), static_cast<std::size_t>(weights().size()));
  for (auto _ : state) benchmark::DoNotOptimize(ggml::quantize(type, x).data());
  report_bytes(state);
  state.SetLabel(ggml::traits(type).name);
}

class ThroughputReporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> bytes_per_second;
  std::vector<std::string> order;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration) continue;
      const std::string name = r.run_name.function_name + (r.report_label.empty() ? "" : " " + r.report_label);
      bytes_per_second[name] = r.counters.at("bytes_per_second");
      order.push_back(name);
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AutoRound)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AutoGptq)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AutoAwq)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgufQ4_0Tuned)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgufQ4_KTuned)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GgufQuantize)
    ->Arg(static_cast<int>(ggml::Type::Q4_0))->Arg(static_cast<int>(ggml::Type::Q8_0))
    ->Arg(static_cast<int>(ggml::Type::Q4_K))->Arg(static_cast<int>(ggml::Type::Q6_K))
    ->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  ThroughputReporter reporter;
  (void)quantized();  // build the inputs outside the timings
  (void)quantized_q4_k();
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const auto memcpy_rate = reporter.bytes_per_second.find("BM_Memcpy");
  if (memcpy_rate != reporter.bytes_per_second.end()) {
    std::printf("\n| packer (4096 x 4096, W4G32 sym) | GB/s of fp32 in | memcpy / packer |\n|---|---|---|\n");
    for (const std::string& name : reporter.order)
      std::printf("| %s | %.2f | %.1f |\n", name.c_str(), reporter.bytes_per_second[name] / 1e9,
                  memcpy_rate->second / reporter.bytes_per_second[name]);
  }
  benchmark::Shutdown();
}
