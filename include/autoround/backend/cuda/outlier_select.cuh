#pragma once
// The loss filtering of tune/outlier_loss.hpp on the GPU: find the k-th largest |out − target| of
// a minibatch exactly, by radix selection on the float's bits (for non-negative floats the bit
// pattern orders as the value), one byte per pass: four histogram passes of 256 bins, each
// reading the two arrays once, and no buffer the size of the data. Then every element at or above
// that magnitude gets out = target, so the squared error and its gradient leave it out.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "../../tune/outlier_loss.hpp"
#include "device_buffer.hpp"
#include "qdq_layer.cuh"

namespace autoround::cuda {

/// Counts, by byte `shift / 8` of the bits of |out − target|, the elements whose higher bytes
/// equal `prefix` (under `prefix_mask`).
template <int = 0>
__global__ void abs_error_histogram_kernel(const float* out, const float* target, long n, unsigned prefix, unsigned prefix_mask,
                                           int shift, unsigned* histogram) {
  __shared__ unsigned local[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0;
  __syncthreads();
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n; i += static_cast<long>(gridDim.x) * blockDim.x) {
    const unsigned bits = __float_as_uint(fabsf(__fsub_rn(out[i], target[i])));
    if ((bits & prefix_mask) == prefix) atomicAdd(&local[(bits >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (local[i]) atomicAdd(&histogram[i], local[i]);
}

/// out[i] = target[i] where |out[i] − target[i]| >= threshold (its error leaves the loss).
template <int = 0>
__global__ void drop_errors_at_least_kernel(float* out, const float* target, long n, float threshold) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n && fabsf(__fsub_rn(out[i], target[i])) >= threshold) out[i] = target[i];
}

/// Drops from `out` (sets to `target`) the outlier_count(n, fraction) errors of largest
/// magnitude and any tied with the smallest of them, as drop_largest_errors on the CPU. Four
/// 1 KiB copies to the host (the histograms); `histogram` is a 256-entry scratch buffer.
inline void drop_largest_errors(float* out, const float* target, long n, double fraction, DeviceBuffer<unsigned>& histogram,
                                cudaStream_t stream) {
  std::size_t remaining = outlier_count(static_cast<std::size_t>(n), fraction);
  if (remaining == 0) return;
  if (histogram.size() != 256) histogram = DeviceBuffer<unsigned>(256);
  const unsigned grid = std::min<unsigned>(blocks_for(n, 256), 1024u);
  unsigned prefix = 0, prefix_mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    check(cudaMemsetAsync(histogram.data(), 0, 256 * sizeof(unsigned), stream), "cudaMemsetAsync");
    abs_error_histogram_kernel<><<<grid, 256, 0, stream>>>(out, target, n, prefix, prefix_mask, shift, histogram.data());
    check(cudaGetLastError(), "abs_error_histogram_kernel");
    std::array<unsigned, 256> counts{};
    check(cudaMemcpyAsync(counts.data(), histogram.data(), sizeof(counts), cudaMemcpyDeviceToHost, stream), "copy to host");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    // the byte of the `remaining`-th largest, counting down from the largest bin
    int bin = 255;
    for (; bin > 0 && counts[static_cast<std::size_t>(bin)] < remaining; --bin) remaining -= counts[static_cast<std::size_t>(bin)];
    prefix |= static_cast<unsigned>(bin) << shift;
    prefix_mask |= 255u << shift;
  }
  float threshold;
  std::memcpy(&threshold, &prefix, sizeof threshold);
  drop_errors_at_least_kernel<><<<blocks_for(n, 256), 256, 0, stream>>>(out, target, n, threshold);
  check(cudaGetLastError(), "drop_errors_at_least_kernel");
}

}  // namespace autoround::cuda
