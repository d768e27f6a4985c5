#pragma once
// The other side of test_eigen_boundary: a shared library compiled with Eigen as nvcc compiles
// it for the CUDA pipeline (no SIMD, 16-byte alignment), like tools/cuda_pipeline.cu.
#include <autoround/model/llama_model.hpp>

/// Replace every linear weight of `model` by a matrix this library allocates (freeing the
/// caller's), and resize the attention norms: what the CUDA pipeline library does to the blocks it is given.
[[gnu::visibility("default")]] void replace_weights_across_boundary(autoround::LlamaModel& model);
