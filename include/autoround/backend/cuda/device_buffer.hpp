#pragma once
// Device memory and streams for the CUDA backend: plain cudaMalloc/cudaFree and streams behind RAII, every
// CUDA call checked and reported with what was being done.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../core/error.hpp"

namespace autoround::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

/// Number of usable GPUs (0 when there is no driver or device).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

/// An owned CUDA stream. Created blocking (not cudaStreamNonBlocking): the legacy default
/// stream, which the synchronous cudaMemcpy of DeviceBuffer::upload/download uses, waits for
/// the work queued on it, so a download always sees the results.
class Stream {
 public:
  Stream() { check(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t get() const { return stream_; }
  void synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_{};
};

/// What the DeviceBuffers of this process hold: bytes now, and the most held at once since the
/// last reset_peak(). (cuBLAS's workspace and the CUDA context are not DeviceBuffers: the total a
/// tool like nvidia-smi shows is this plus a few hundred MB.) Memory budgets are checked on it.
class DeviceMemory {
 public:
  static std::size_t current() { return counter().current.load(); }
  static std::size_t peak() { return counter().peak.load(); }
  static void reset_peak() { counter().peak.store(counter().current.load()); }
  static void allocated(std::size_t bytes) {
    const std::size_t now = counter().current.fetch_add(bytes) + bytes;
    std::size_t seen = counter().peak.load();
    while (now > seen && !counter().peak.compare_exchange_weak(seen, now)) {
    }
  }
  static void freed(std::size_t bytes) { counter().current.fetch_sub(bytes); }

 private:
  struct Counter {
    std::atomic<std::size_t> current{0}, peak{0};
  };
  static Counter& counter() {
    static Counter c;
    return c;
  }
};

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : size_(n) {
    if (!n) return;
    check(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)),
          ("cudaMalloc of " + std::to_string(n * sizeof(T) >> 20) + " MiB").c_str());
    DeviceMemory::allocated(n * sizeof(T));
  }
  explicit DeviceBuffer(std::span<const T> host) : DeviceBuffer(host.size()) { upload(host); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~DeviceBuffer() {
    if (!data_) return;
    cudaFree(data_);
    DeviceMemory::freed(size_ * sizeof(T));
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }

  void upload(std::span<const T> host) {
    if (host.size() != size_) throw Error("DeviceBuffer::upload: size mismatch");
    if (size_) check(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice), "copy to device");
  }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    if (size_) check(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost), "copy to host");
    return host;
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace autoround::cuda
