#include <autoround/backend/cuda/qdq_layer.cuh>

#include "qdq_gpu.hpp"

using namespace autoround;

int gpu_count() { return cuda::device_count(); }

std::vector<float> activation_qdq_on_gpu(const QuantSpec& spec, float global_scale, float static_scale, const std::vector<float>& x,
                                         long rows, long cols) {
  const FloatFormat format = float_format(spec);
  const float_formulas::FloatParams p{format, global_scale, spec.act_rceil};
  const long group = static_scale > 0.0f ? 32 : float_spec(format).group_size;
  cuda::DeviceBuffer<float> data{std::span<const float>(x)};
  const long n = rows * ((cols + group - 1) / group);
  cuda::activation_qdq_kernel<><<<cuda::blocks_for(n, 128), 128>>>(p, static_scale, data.data(), nullptr, rows, cols, group);
  cuda::check(cudaGetLastError(), "activation_qdq_kernel");
  cuda::check(cudaDeviceSynchronize(), "synchronize");
  return data.download();
}

std::vector<float> activation_backward_on_gpu(const QuantSpec& spec, float global_scale, float static_scale, const std::vector<float>& x,
                                              const std::vector<float>& grad, long rows, long cols) {
  const FloatFormat format = float_format(spec);
  const float_formulas::FloatParams p{format, global_scale, spec.act_rceil};
  const long group = static_scale > 0.0f ? 32 : float_spec(format).group_size;
  cuda::DeviceBuffer<float> input{std::span<const float>(x)}, g{std::span<const float>(grad)};
  const long n = rows * ((cols + group - 1) / group);
  cuda::activation_backward_kernel<><<<cuda::blocks_for(n, 128), 128>>>(p, static_scale, input.data(), g.data(), rows, cols, group);
  cuda::check(cudaGetLastError(), "activation_backward_kernel");
  cuda::check(cudaDeviceSynchronize(), "synchronize");
  return g.download();
}

QdqResult run_qdq_on_gpu(const QdqCase& c) {
  cuda::QdqLayer layer(c.spec, c.rows, c.cols, c.weight);
  if (layer.floating()) layer.set_global_scale(c.global_scale);
  layer.rounding().upload(c.rounding);
  layer.min_scale().upload(c.min_scale);
  layer.max_scale().upload(c.max_scale);
  const auto n = c.weight.size(), groups = c.min_scale.size();
  cuda::DeviceBuffer<float> out(n), grad(std::span<const float>(c.grad_out)), grad_min(groups), grad_max(groups);
  cuda::DeviceBuffer<std::uint8_t> codes(n);
  QdqResult r;
  layer.forward(out.data());
  r.out = out.download();
  r.squared_error = cuda::squared_error(out.data(), layer.weight().data(), static_cast<long>(n));
  layer.backward(grad.data(), grad_min.data(), grad_max.data());
  r.grad_v = grad.download();
  r.grad_min = grad_min.download();
  r.grad_max = grad_max.download();
  layer.encode(codes.data());
  r.codes = codes.download();
  cuda::sign_sgd(layer.rounding(), grad.data(), c.lr);
  r.rounding_after_step = layer.rounding().download();
  cuda::check(cudaDeviceSynchronize(), "synchronize");
  return r;
}

std::pair<std::vector<float>, std::vector<float>> search_clipping_on_gpu(const QdqCase& c, const std::vector<float>& importance,
                                                                          const ClipSearch& search) {
  cuda::QdqLayer layer(c.spec, c.rows, c.cols, c.weight);
  const cuda::DeviceBuffer<float> a{std::span<const float>(importance)};
  layer.search_clipping(a.data(), search);
  cuda::check(cudaDeviceSynchronize(), "synchronize");
  return {layer.min_scale().download(), layer.max_scale().download()};
}
