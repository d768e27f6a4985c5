// One layer-wise AutoRound step on the GPU for a LLaMA-3-8B MLP weight (out 14336, in 4096) on a
// minibatch of 8 samples x 2048 tokens (the reference's batch), against the step's two float32
// cuBLAS GEMMs alone in the same run: how close the step is to its GEMM cost, and the GEMM
// rate it achieves. Random weights and inputs: shape-only timing.
//
//   bench_cuda_layer_step [out in tokens_per_sample]
#include <autoround/backend/cuda/cuda_runs.cuh>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>

using namespace autoround;

namespace {
double seconds_per_call(const std::function<void()>& f, int repeats) {
  f();
  cuda::check(cudaDeviceSynchronize(), "warm-up");
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) f();
  cuda::check(cudaDeviceSynchronize(), "timing");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
}
}  // namespace

int main(int argc, char** argv) {
  if (cuda::device_count() == 0) {
    std::printf("bench_cuda_layer_step: no CUDA device\n");
    return 77;
  }
  const Index out = argc > 1 ? std::atol(argv[1]) : 14336, in = argc > 2 ? std::atol(argv[2]) : 4096;
  const Index seqlen = argc > 3 ? std::atol(argv[3]) : 2048, samples = 8;
  RowMatrix w(out, in), x(samples * seqlen, in);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = 0.02f * normal(rng);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  TuneOptions o;
  o.iters = 1 << 30;  // the learning rate stays away from 0 over the timed steps
  o.seqlen = seqlen;
  o.batch_size = samples;
  double step[2];
  for (int p = 0; p < 2; ++p) {
    LayerTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(o, DynamicIntQuantizer({4, 128, Asymmetric}), SignSGD<>{},
                                                             Cuda{p == 0 ? GemmPrecision::Float32 : GemmPrecision::BFloat16}, view(w),
                                                             view(x), nullptr, "bench");
    step[p] = seconds_per_call([&] { run.step(); }, 10);
  }

  const Index tokens = samples * seqlen;
  cuda::DeviceBuffer<float> a(static_cast<std::size_t>(tokens * in)), b(static_cast<std::size_t>(out * in)),
      c(static_cast<std::size_t>(tokens * out)), d(static_cast<std::size_t>(out * in));
  cuda::DeviceBuffer<__nv_bfloat16> ab(a.size()), bb(b.size()), cb(c.size());
  cuda::Blas blas;
  double gemms[2];
  gemms[0] = seconds_per_call([&] {
    blas.matmul_nt(a.data(), b.data(), c.data(), tokens, out, in);
    blas.matmul_tn(c.data(), a.data(), d.data(), tokens, out, in);
  }, 10);
  gemms[1] = seconds_per_call([&] {
    blas.matmul_nt(ab.data(), bb.data(), c.data(), tokens, out, in);
    blas.matmul_tn(cb.data(), ab.data(), d.data(), tokens, out, in);
  }, 10);
  const double flop = 4.0 * static_cast<double>(tokens) * static_cast<double>(out) * static_cast<double>(in);
  std::printf("| layer %ld x %ld, %ld tokens, W4G128 asym | ms | TFLOP/s (GEMM flops / time) | / two GEMMs |\n|---|---|---|---|\n",
              out, in, tokens);
  const char* names[] = {"float32", "bf16 operands, float32 accumulation"};
  for (int p = 0; p < 2; ++p) {
    std::printf("| two GEMMs alone, %s (cuBLAS) | %.2f | %.1f | 1.00 |\n", names[p], gemms[p] * 1e3, flop / gemms[p] / 1e12);
    std::printf("| AutoRound step, %s (LayerTuningRun<..., Cuda>) | %.2f | %.1f | %.3f |\n", names[p], step[p] * 1e3,
                flop / step[p] / 1e12, step[p] / gemms[p]);
  }
  return 0;
}
