// Layer-wise AutoRound on the GPU against the CPU LayerTuningRun on the same layer and inputs
// (same sampler, schedule and best-step rule; kernels bit-identical; only the GEMMs' summation
// order differs): the per-step losses agree to 1e-4 relative and the chosen codes agree for the
// overwhelming majority of weights. Random data (heavy-tailed weights, inputs with a few loud
// channels): this checks the implementation, not accuracy. Skips (exit 77) without a GPU.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <cstdio>
#include <random>

#include "layer_run_gpu.hpp"
#include "qdq_gpu.hpp"

using namespace autoround;

TEST_CASE("GPU layer tuning follows the CPU run step for step") {
  std::mt19937 rng(21);
  std::student_t_distribution<float> heavy(3.0f);
  std::normal_distribution<float> normal;
  RowMatrix w(256, 512), x(8 * 64, 512);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = 0.02f * heavy(rng);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng) * ((i % 512) % 97 == 0 ? 20.0f : 1.0f);
  for (QuantSpec spec : {QuantSpec{4, 128, Asymmetric}, QuantSpec{2, 64, Asymmetric}, QuantSpec{4, 128, Symmetric}}) {
    CAPTURE(spec.bits);
    CAPTURE(spec.symmetry == Symmetric);
    TuneOptions o;
    o.iters = 60;
    o.seqlen = 64;
    o.batch_size = 4;
    const GpuLayerRun gpu = run_layer_on_gpu(o, spec, view(w), view(x));
    LayerTuningRun<DynamicIntQuantizer, SignSGD<>, Cpu> cpu(o, DynamicIntQuantizer(spec), SignSGD<>{}, Cpu{}, view(w), view(x),
                                                            nullptr, "cpu");
    std::vector<double> losses;
    while (cpu.running()) losses.push_back(cpu.step());
    const auto cpu_result = cpu.result();
    REQUIRE(losses.size() == gpu.losses.size());
    double worst = 0;
    for (std::size_t s = 0; s < losses.size(); ++s) worst = std::max(worst, std::fabs(gpu.losses[s] / losses[s] - 1.0));
    std::size_t same = 0;
    for (std::size_t i = 0; i < cpu_result.codes.size(); ++i) same += cpu_result.codes[i] == gpu.result.codes[i];
    const double agreement = static_cast<double>(same) / static_cast<double>(cpu_result.codes.size());
    MESSAGE(std::string(spec.symmetry == Symmetric ? "sym" : "asym") << " W" << spec.bits << ": largest per-step loss difference "
                << worst << " (relative), codes equal for " << 100.0 * agreement << "% of weights, best step CPU "
                << cpu_result.stats.best_step << " GPU " << gpu.result.stats.best_step);
    CHECK(worst < 1e-4);
    CHECK(agreement > 0.99);
    CHECK(gpu.result.stats.rtn_loss == doctest::Approx(cpu_result.stats.rtn_loss).epsilon(1e-4).scale(0));

    // bf16 GEMM operands (the reference's amp precision): another rounding of the loss, so the
    // path drifts; it must still tune (best loss well below RTN's) and stay close to float32.
    const GpuLayerRun bf16 = run_layer_on_gpu(o, spec, view(w), view(x), true);
    std::size_t same_bf16 = 0;
    for (std::size_t i = 0; i < cpu_result.codes.size(); ++i) same_bf16 += cpu_result.codes[i] == bf16.result.codes[i];
    const double agreement_bf16 = static_cast<double>(same_bf16) / static_cast<double>(cpu_result.codes.size());
    MESSAGE("bf16 GEMMs: RTN loss " << bf16.result.stats.rtn_loss << " (float32 " << cpu_result.stats.rtn_loss << "), best "
                                    << bf16.result.stats.best_loss << " (float32 " << cpu_result.stats.best_loss
                                    << "), codes equal to float32's for " << 100.0 * agreement_bf16 << "%");
    CHECK(bf16.result.stats.rtn_loss == doctest::Approx(cpu_result.stats.rtn_loss).epsilon(1e-2).scale(0));
    CHECK(bf16.result.stats.best_loss < 0.95 * bf16.result.stats.rtn_loss);
    CHECK(agreement_bf16 > 0.9);
  }
}

TEST_CASE("LayerTuner with the Cuda policy and separate full-precision inputs follows the CPU LayerTuner") {
  // the reference's q_inputs / fp_inputs: the quantized layer sees inputs that differ from the
  // full-precision layer's (outputs of already-quantized layers before it)
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  RowMatrix w(128, 256), x(6 * 32, 256), fp_x(6 * 32, 256);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = 0.05f * normal(rng);
  for (Index i = 0; i < x.size(); ++i) {
    fp_x.data()[i] = normal(rng);
    x.data()[i] = fp_x.data()[i] + 0.05f * normal(rng);
  }
  TuneOptions o;
  o.iters = 40;
  o.seqlen = 32;
  o.batch_size = 4;
  const QuantSpec spec{4, 64, Asymmetric};
  const auto gpu = tune_layer_on_gpu(o, spec, view(w), view(x), view(fp_x));
  const auto cpu = LayerTuner<DynamicIntQuantizer>(o, DynamicIntQuantizer(spec)).tune(view(w), view(x), view(fp_x), "cpu");
  std::size_t same = 0;
  for (std::size_t i = 0; i < cpu.codes.size(); ++i) same += cpu.codes[i] == gpu.codes[i];
  const double agreement = static_cast<double>(same) / static_cast<double>(cpu.codes.size());
  MESSAGE("separate fp inputs: RTN loss CPU " << cpu.stats.rtn_loss << " GPU " << gpu.stats.rtn_loss << ", best CPU "
                                             << cpu.stats.best_loss << " GPU " << gpu.stats.best_loss << ", codes equal for "
                                             << 100.0 * agreement << "%");
  CHECK(gpu.stats.rtn_loss == doctest::Approx(cpu.stats.rtn_loss).epsilon(1e-4).scale(0));
  CHECK(gpu.stats.best_loss == doctest::Approx(cpu.stats.best_loss).epsilon(1e-3).scale(0));
  CHECK(cpu.stats.best_loss < 0.95 * cpu.stats.rtn_loss);
  CHECK(agreement > 0.99);
}

TEST_CASE("GGUF k-quant schemes (DoubleQuantizer) tuned on the GPU follow the CPU LayerTuner") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  RowMatrix w(96, 512), x(6 * 32, 512);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = 0.05f * normal(rng);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  TuneOptions o;
  o.iters = 40;
  o.seqlen = 32;
  o.batch_size = 4;
  for (ggml::Type type : {ggml::Type::Q4_K, ggml::Type::Q6_K, ggml::Type::Q2_K}) {
    const QuantSpec spec = *ggml::double_quant_spec_for(type);
    CAPTURE(spec.bits);
    const auto gpu = tune_kquant_layer_on_gpu(o, spec, view(w), view(x), view(x));
    const auto cpu = LayerTuner<DynamicDoubleQuantizer>(o, DynamicDoubleQuantizer(spec)).tune(view(w), view(x), view(x), "cpu");
    std::size_t same = 0;
    for (std::size_t i = 0; i < cpu.codes.size(); ++i) same += cpu.codes[i] == gpu.codes[i];
    const double agreement = static_cast<double>(same) / static_cast<double>(cpu.codes.size());
    MESSAGE(std::string(ggml::traits(type).name) << ": RTN loss CPU " << cpu.stats.rtn_loss << " GPU " << gpu.stats.rtn_loss << ", best CPU "
                                    << cpu.stats.best_loss << " GPU " << gpu.stats.best_loss << ", codes equal for "
                                    << 100.0 * agreement << "%");
    CHECK(gpu.stats.rtn_loss == doctest::Approx(cpu.stats.rtn_loss).epsilon(1e-4).scale(0));
    // the GEMMs round differently (cuBLAS vs Eigen), so a tie in a SignSGD step can flip: as
    // close as the CPU run is to itself with inputs one ulp off (test_cuda_block_run)
    CHECK(gpu.stats.best_loss == doctest::Approx(cpu.stats.best_loss).epsilon(1e-2).scale(0));
    CHECK(cpu.stats.best_loss < 0.95 * cpu.stats.rtn_loss);
    CHECK(agreement > 0.99);
    CHECK(gpu.super_scales.size() == cpu.super_scales.size());
    CHECK(gpu.mins.size() == cpu.mins.size());
  }
}

int main(int argc, char** argv) {
  if (gpu_count() == 0) {
    std::printf("test_cuda_layer_run: SKIPPED: no CUDA device here (run scripts/gpu-tests.sh on a GPU machine)\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
