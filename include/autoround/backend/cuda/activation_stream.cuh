#pragma once
// One activation stream of block-wise tuning on the GPU: every calibration sample's hidden state
// at a block boundary ([samples, seqlen, hidden], sample after sample), stored as float32 or
// bf16, in device memory or in pinned host memory. The tuning run reads minibatches out of it
// into float32 device matrices and writes block outputs back, whatever the storage:
//   - float32: cudaMemcpyAsync (from pinned host memory: DMA over the bus);
//   - bf16: a conversion kernel reading/writing the storage directly (pinned host memory is
//     mapped into the device's address space, so the same kernel streams it over the bus).
// bf16 storage is what the reference keeps (its streams are in the model's dtype); a value read
// back is its float32 value rounded to nearest even, so a bf16 stream changes the numerics
// (docs/speed.md measures by how much). Host storage changes nothing but where the bytes live.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "../../core/matrix.hpp"
#include "device_buffer.hpp"
#include "qdq_layer.cuh"

namespace autoround::cuda {

template <int = 0>
__global__ void bf16_to_float_kernel(const __nv_bfloat16* from, float* to, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) to[i] = __bfloat162float(from[i]);
}
template <int = 0>
__global__ void float_to_bf16_kernel(const float* from, __nv_bfloat16* to, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) to[i] = __float2bfloat16_rn(from[i]);
}

class ActivationStream {
 public:
  ActivationStream() = default;
  /// `samples` × `sample_values` values (a sample: seqlen × hidden), uninitialised.
  ActivationStream(long samples, long sample_values, StreamDtype dtype, bool on_host)
      : samples_(samples), sample_values_(sample_values), dtype_(dtype), on_host_(on_host) {
    const std::size_t n = bytes();
    if (n == 0) return;
    const std::string what = "allocate an activation stream of " + std::to_string(n >> 20) + " MiB in " +
                             (on_host ? "pinned host memory" : "device memory");
    if (on_host) {
      check(cudaHostAlloc(&host_, n, cudaHostAllocMapped | cudaHostAllocPortable), what.c_str());
      check(cudaHostGetDevicePointer(&data_, host_, 0), "map an activation stream into the device's address space");
    } else {
      check(cudaMalloc(&data_, n), what.c_str());
      DeviceMemory::allocated(n);
    }
  }
  ActivationStream(const ActivationStream&) = delete;
  ActivationStream& operator=(const ActivationStream&) = delete;
  ActivationStream(ActivationStream&& o) noexcept { swap(o); }
  ActivationStream& operator=(ActivationStream&& o) noexcept {
    swap(o);
    return *this;
  }
  ~ActivationStream() {
    if (host_) cudaFreeHost(host_);
    else if (data_) {
      cudaFree(data_);
      DeviceMemory::freed(bytes());
    }
  }

  long samples() const { return samples_; }
  long sample_values() const { return sample_values_; }
  StreamDtype dtype() const { return dtype_; }
  bool on_host() const { return on_host_; }
  std::size_t bytes() const { return bytes(samples_, sample_values_, dtype_); }
  static std::size_t bytes(long samples, long sample_values, StreamDtype dtype) {
    return static_cast<std::size_t>(samples) * static_cast<std::size_t>(sample_values) * (dtype == StreamDtype::Float32 ? 4 : 2);
  }

  /// to[0 .. count·sample_values) (float32, device) = samples [first, first + count).
  void load(long first, long count, float* to, cudaStream_t stream) const {
    const long n = count * sample_values_;
    if (dtype_ == StreamDtype::Float32)
      check(cudaMemcpyAsync(to, f32() + first * sample_values_, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDefault, stream),
            "read an activation stream");
    else
      bf16_to_float_kernel<><<<blocks_for(n, 256), 256, 0, stream>>>(bf16() + first * sample_values_, to, n);
  }
  /// samples [first, first + count) = from[0 .. count·sample_values) (float32, device).
  void store(const float* from, long first, long count, cudaStream_t stream) {
    const long n = count * sample_values_;
    if (dtype_ == StreamDtype::Float32)
      check(cudaMemcpyAsync(f32() + first * sample_values_, from, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDefault, stream),
            "write an activation stream");
    else
      float_to_bf16_kernel<><<<blocks_for(n, 256), 256, 0, stream>>>(from, bf16() + first * sample_values_, n);
  }
  /// Sample `s` = a host matrix of sample_values floats (through `scratch`, a device buffer of at
  /// least sample_values floats, when the storage is bf16). Synchronous.
  void upload(long s, const RowMatrix& m, DeviceBuffer<float>& scratch, cudaStream_t stream) {
    require_sample(s, m.size());
    check(cudaMemcpyAsync(scratch.data(), m.data(), static_cast<std::size_t>(sample_values_) * sizeof(float), cudaMemcpyHostToDevice, stream),
          "copy a calibration sample to the device");
    store(scratch.data(), s, 1, stream);
    check(cudaStreamSynchronize(stream), "copy a calibration sample to the device");
  }
  /// The host matrix (rows × sample_values / rows) = sample `s`, through `scratch`. Synchronous.
  void download(long s, RowMatrix& m, long rows, DeviceBuffer<float>& scratch, cudaStream_t stream) const {
    m.resize(rows, sample_values_ / rows);
    require_sample(s, m.size());
    load(s, 1, scratch.data(), stream);
    check(cudaMemcpyAsync(m.data(), scratch.data(), static_cast<std::size_t>(sample_values_) * sizeof(float), cudaMemcpyDeviceToHost, stream),
          "copy block outputs to the host");
    check(cudaStreamSynchronize(stream), "copy block outputs to the host");
  }
  /// A copy (same storage), queued on `stream`.
  ActivationStream clone(cudaStream_t stream) const {
    ActivationStream c(samples_, sample_values_, dtype_, on_host_);
    if (bytes()) check(cudaMemcpyAsync(c.data_, data_, bytes(), cudaMemcpyDefault, stream), "copy an activation stream");
    return c;
  }

 private:
  void require_sample(long s, long values) const {
    if (s < 0 || s >= samples_ || values != sample_values_) throw Error("ActivationStream: sample " + std::to_string(s) + " out of range or of the wrong size");
  }
  float* f32() const { return static_cast<float*>(data_); }
  __nv_bfloat16* bf16() const { return static_cast<__nv_bfloat16*>(data_); }
  void swap(ActivationStream& o) noexcept {
    std::swap(samples_, o.samples_);
    std::swap(sample_values_, o.sample_values_);
    std::swap(dtype_, o.dtype_);
    std::swap(on_host_, o.on_host_);
    std::swap(data_, o.data_);
    std::swap(host_, o.host_);
  }

  long samples_ = 0, sample_values_ = 0;
  StreamDtype dtype_ = StreamDtype::Float32;
  bool on_host_ = false;
  void* data_ = nullptr;  // device address (of the mapped host memory when on_host_)
  void* host_ = nullptr;  // the pinned host allocation, when on_host_
};

}  // namespace autoround::cuda
