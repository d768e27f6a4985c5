#pragma once
// Compile-time configuration vocabulary shared by every policy.
#include <limits>

// Functions the host and the CUDA kernels share (the same formula compiled twice, so that the
// two backends compute the same bits): __host__ __device__ under nvcc, plain functions otherwise.
#if defined(__CUDACC__)
#define AUTOROUND_HOST_DEVICE __host__ __device__
#else
#define AUTOROUND_HOST_DEVICE
#endif

namespace autoround {

/// Sentinel for "chosen at run time", as Eigen::Dynamic: `IntQuantizer<Dynamic, Dynamic, Dynamic>`.
/// Not -1, because -1 already means "one group per output row" in AutoRound's group_size.
inline constexpr int Dynamic = std::numeric_limits<int>::min();

/// AutoRound's group_size = -1: one group spans a whole output row (per-channel quantization).
inline constexpr int PerChannel = -1;

enum class Symmetry : int {
  Asymmetric = 0,  ///< int_asym: codes 0..2^b-1 with a zero point
  Symmetric = 1,   ///< int_sym ("full range"): codes -2^(b-1)..2^(b-1)-1, no zero point
};
inline constexpr Symmetry Asymmetric = Symmetry::Asymmetric;
inline constexpr Symmetry Symmetric = Symmetry::Symmetric;

/// What a weight's codes are (the reference's data_type): integers on a uniform grid, or the
/// floating-point element formats of MXFP4/MXFP8 (mx_fp), NVFP4 (nv_fp) and FP8 (fp).
enum class DataType : int { Int = 0, MxFp = 1, NvFp = 2, Fp = 3 };

using Index = long;  // signed, like Eigen::Index, so sizes subtract safely

}  // namespace autoround
