#pragma once
// The GPU half of test_cuda_qdq: runs one layer's qdq forward, backward, encode, SignSGD step
// and squared error with the CUDA kernels (compiled by nvcc in qdq_gpu.cu), so that the test
// itself, and the CPU reference it compares with, stay plain C++.
#include <cstdint>
#include <utility>
#include <vector>

#include <autoround/quantizer/quantizer.hpp>
#include <autoround/tune/tune_options.hpp>
#include <autoround/core/config.hpp>

struct QdqCase {
  autoround::QuantSpec spec;
  long rows = 0, cols = 0;
  std::vector<float> weight, rounding, min_scale, max_scale, grad_out;
  float lr = 0.005f;
  float global_scale = 0.0f;  ///< floating-point specs: NVFP4's per-tensor scale (FloatQuantizer::global_scale)
};

struct QdqResult {
  std::vector<float> out, grad_v, grad_min, grad_max, rounding_after_step;
  std::vector<std::uint8_t> codes;
  double squared_error = 0;  ///< sum((out - weight)^2)
};

QdqResult run_qdq_on_gpu(const QdqCase& c);
/// QdqLayer::search_clipping (clip_search_kernel) on c.weight under `importance` (one per column):
/// the searched min_scale and max_scale, one per group.
std::pair<std::vector<float>, std::vector<float>> search_clipping_on_gpu(const QdqCase& c, const std::vector<float>& importance,
                                                                          const autoround::ClipSearch& search);
/// activation_qdq_kernel on x ([rows, cols]) under the spec's format: dynamic groups (NVFP4
/// with `global_scale`), or FP8_STATIC's one scale `static_scale` when it is > 0.
std::vector<float> activation_qdq_on_gpu(const autoround::QuantSpec& spec, float global_scale, float static_scale,
                                         const std::vector<float>& x, long rows, long cols);
/// activation_backward_kernel: dL/dx of the same quantization from dL/d q(x) = grad.
std::vector<float> activation_backward_on_gpu(const autoround::QuantSpec& spec, float global_scale, float static_scale,
                                              const std::vector<float>& x, const std::vector<float>& grad, long rows, long cols);
int gpu_count();
