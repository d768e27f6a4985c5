#pragma once
// The two GEMMs of a tuning step through cuBLAS, on row-major device matrices: in float32
// (cuBLAS's default math mode: no TF32), matching the CPU backend up to summation order, or
// with bfloat16 operands and float32 accumulation and output (the precision the reference's
// default "amp" autocast gives its GEMMs on CUDA).
//   matmul_nt: y[m, n] = x[m, k] * w[n, k]^T      (layer outputs)
//   matmul_tn: y[a, b] = x[m, a]^T * w[m, b]      (weight gradient)
// Row-major A is column-major A^T, so each call is one cublasSgemm with the operands swapped.
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <string>
#include <type_traits>

#include "../../core/error.hpp"

namespace autoround::cuda {

inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS: ") + what + ": status " + std::to_string(status));
}

class Blas {
 public:
  /// GEMMs are queued on `stream` (0: the legacy default stream).
  explicit Blas(cudaStream_t stream = nullptr) {
    check(cublasCreate(&handle_), "cublasCreate");
    check(cublasSetStream(handle_, stream), "cublasSetStream");
  }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  ~Blas() { cublasDestroy(handle_); }

  void matmul_nt(const float* x, const float* w, float* y, long m, long n, long k) const {
    const float one = 1.0f, zero = 0.0f;
    check(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &one,
                      w, static_cast<int>(k), x, static_cast<int>(k), &zero, y, static_cast<int>(n)),
          "matmul_nt");
  }
  void matmul_tn(const float* x, const float* w, float* y, long m, long a, long b) const {
    const float one = 1.0f, zero = 0.0f;
    check(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(b), static_cast<int>(a), static_cast<int>(m), &one,
                      w, static_cast<int>(b), x, static_cast<int>(a), &zero, y, static_cast<int>(b)),
          "matmul_tn");
  }

  /// General row-major GEMM: C[m, n] = alpha op(A) op(B) + beta C, where op(A) is [m, k] (A stored
  /// [k, m] when trans_a) and op(B) is [k, n] (B stored [n, k] when trans_b); ld* are row strides.
  /// T is float (float32 GEMM) or __nv_bfloat16 (bf16 operands, float32 accumulation and C).
  template <class T>
  void gemm(bool trans_a, bool trans_b, long m, long n, long k, float alpha, const T* a, long lda, const T* b, long ldb,
            float beta, float* c, long ldc) const {
    // row-major C = A B is column-major C^T = B^T A^T: swap the operands, keep the flags
    check(cublasGemmEx(handle_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                       static_cast<int>(m), static_cast<int>(k), &alpha, b, data_type<T>(), static_cast<int>(ldb), a,
                       data_type<T>(), static_cast<int>(lda), &beta, c, CUDA_R_32F, static_cast<int>(ldc), CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
          "gemm");
  }

  /// `count` independent GEMMs of one shape, operands given by device arrays of pointers (so
  /// that heads sharing a KV head can read the same K/V: grouped-query attention).
  template <class T>
  void gemm_batched(bool trans_a, bool trans_b, long m, long n, long k, float alpha, const T* const* a, long lda,
                    const T* const* b, long ldb, float beta, float* const* c, long ldc, long count) const {
    check(cublasGemmBatchedEx(handle_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                              static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha,
                              reinterpret_cast<const void* const*>(b), data_type<T>(), static_cast<int>(ldb),
                              reinterpret_cast<const void* const*>(a), data_type<T>(), static_cast<int>(lda), &beta,
                              reinterpret_cast<void* const*>(c), CUDA_R_32F, static_cast<int>(ldc), static_cast<int>(count),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "gemm_batched");
  }

  void matmul_nt(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, long m, long n, long k) const {
    gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, w, k, x, k, y, n, "matmul_nt (bf16)");
  }
  void matmul_tn(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, long m, long a, long b) const {
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, b, a, m, w, b, x, a, y, b, "matmul_tn (bf16)");
  }

 private:
  void gemm_bf16(cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k, const __nv_bfloat16* a, long lda,
                 const __nv_bfloat16* b, long ldb, float* c, long ldc, const char* what) const {
    const float one = 1.0f, zero = 0.0f;
    check(cublasGemmEx(handle_, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &one, a, CUDA_R_16BF,
                       static_cast<int>(lda), b, CUDA_R_16BF, static_cast<int>(ldb), &zero, c, CUDA_R_32F, static_cast<int>(ldc),
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          what);
  }

  template <class T>
  static constexpr cudaDataType_t data_type() {
    return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
  }

  cublasHandle_t handle_{};
};

}  // namespace autoround::cuda
