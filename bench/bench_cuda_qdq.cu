// GPU throughput of AutoRound's element-wise inner loop on one LLaMA-3-8B MLP weight
// (14336 x 4096) for W4G128 asym and the floating-point formats (MXFP4, MXFP8, NVFP4, FP8 per
// channel): the qdq forward and the backward, timed with CUDA events,
// against a device-to-device copy of the same bytes in the same run. Random weights and
// gradients: shape-only timing.
//
//   bench_cuda_qdq        (prints a table; needs a GPU)
#include <autoround/backend/cuda/qdq_layer.cuh>

#include <cstdio>
#include <random>
#include <vector>

using namespace autoround;

namespace {
template <class F>
float milliseconds(F f, int repeats) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  f();  // warm-up
  cudaEventRecord(start);
  for (int i = 0; i < repeats; ++i) f();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / static_cast<float>(repeats);
}
}  // namespace

int main() {
  if (cuda::device_count() == 0) {
    std::printf("bench_cuda_qdq: no CUDA device\n");
    return 77;
  }
  const long rows = 14336, cols = 4096, n = rows * cols;
  std::vector<float> w(static_cast<std::size_t>(n));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& x : w) x = normal(rng);
  cuda::DeviceBuffer<float> out(static_cast<std::size_t>(n)), grad(static_cast<std::size_t>(n)), copy(static_cast<std::size_t>(n));
  const cuda::DeviceBuffer<float> weight{std::span<const float>(w)};
  const int repeats = 20;
  const float copy_ms = milliseconds([&] { cudaMemcpy(copy.data(), weight.data(), n * 4, cudaMemcpyDeviceToDevice); }, repeats);
  // bytes each pass must move at least: forward reads w, v and writes out; backward reads w, v
  // and reads + writes grad; the copy reads and writes n floats.
  const double gb = static_cast<double>(n) * 4 / 1e9;
  std::printf("| scheme (14336 x 4096) | kernel | ms | GB/s (minimum traffic) | time / device copy of the weight |\n|---|---|---|---|---|\n");
  std::printf("| | device-to-device copy | %.3f | %.0f | 1.00 |\n", copy_ms, 2 * gb / (copy_ms / 1e3));
  const std::pair<const char*, QuantSpec> schemes[] = {{"W4G128 asym", {4, 128, Asymmetric}},
                                                       {"MXFP4", float_spec(FloatFormat::MxFp4)},
                                                       {"MXFP8", float_spec(FloatFormat::MxFp8)},
                                                       {"NVFP4", float_spec(FloatFormat::NvFp4)},
                                                       {"FP8 per channel", float_spec(FloatFormat::Fp8)}};
  for (const auto& [name, spec] : schemes) {
    cuda::QdqLayer layer(spec, rows, cols, w);
    if (layer.floating()) layer.set_global_scale(2688.0f / 0.1f);  // NVFP4: a global scale of the weights' order
    cuda::DeviceBuffer<float> gmin(static_cast<std::size_t>(layer.shape().groups())), gmax(static_cast<std::size_t>(layer.shape().groups()));
    const float forward_ms = milliseconds([&] { layer.forward(out.data()); }, repeats);
    const float backward_ms = milliseconds([&] {
      cudaMemcpy(grad.data(), out.data(), n * 4, cudaMemcpyDeviceToDevice);
      layer.backward(grad.data(), gmin.data(), gmax.data());
    }, repeats) - copy_ms;
    const float step_ms = milliseconds([&] { cuda::sign_sgd(layer.rounding(), grad.data(), 1e-3f); }, repeats);
    cuda::check(cudaDeviceSynchronize(), "bench");
    std::printf("| %s | qdq forward | %.3f | %.0f | %.2f |\n", name, forward_ms, 3 * gb / (forward_ms / 1e3), forward_ms / copy_ms);
    std::printf("| %s | backward | %.3f | %.0f | %.2f |\n", name, backward_ms, 4 * gb / (backward_ms / 1e3), backward_ms / copy_ms);
    std::printf("| %s | SignSGD step (v) | %.3f | %.0f | %.2f |\n", name, step_ms, 3 * gb / (step_ms / 1e3), step_ms / copy_ms);
  }
  return 0;
}
