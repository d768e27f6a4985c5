#pragma once
// The kernels DeepSeek-V3's multi-head latent attention (MLA) adds to the GPU block run
// (block_tuning_run.cuh): they lay the latent layers' outputs out as the per-head keys and values
// the attention GEMMs read, and their gradients back. Everything else of MLA is what any block
// runs (GEMMs, RMSNorm, RoPE, the attention core): model/latent_attention.hpp has the math.
// Per token: kv_a's output is [latent (kv_lora) | one roped key part (rope)], kv_b's is per head
// [k_nope (nope) | v (value)]; a head's key is [k_nope | the shared roped part], its query
// q_b's [q_nope | q_rope] as it comes. Pure data movement and fixed-order sums: bit-exact.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace autoround::cuda {

/// x [rows, left + right] → a [rows, left], b [rows, right] (kv_a's output: the latent and the key part).
template <int = 0>
__global__ void split_columns_kernel(const float* x, long rows, long left, long right, float* a, float* b) {
  const long cols = left + right, i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long r = i / cols, c = i % cols;
  if (c < left) a[r * left + c] = x[i]; else b[r * right + c - left] = x[i];
}

/// a [rows, left], b [rows, right] → out [rows, left + right] (float32 and/or its bf16 copy; either may be null).
template <int = 0>
__global__ void join_columns_kernel(const float* a, const float* b, long rows, long left, long right, float* out,
                                    __nv_bfloat16* copy) {
  const long cols = left + right, i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long r = i / cols, c = i % cols;
  const float value = c < left ? a[r * left + c] : b[r * right + c - left];
  if (out) out[i] = value;
  if (copy) copy[i] = __float2bfloat16_rn(value);
}

/// kv_b's output kv [rows, heads·(nope + value)] and the roped key part [rows, rope] → the keys
/// k [rows, heads·(nope + rope)] and the values v [rows, heads·value].
template <int = 0>
__global__ void latent_keys_values_kernel(const float* kv, const float* key_rope, long rows, long heads, long nope, long rope, long value,
                                          float* k, float* v) {
  const long width = nope + rope + value, i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * heads * width) return;
  const long e = i % width, h = (i / width) % heads, r = i / (width * heads);
  const float* from = kv + (r * heads + h) * (nope + value);
  if (e < nope) k[(r * heads + h) * (nope + rope) + e] = from[e];
  else if (e < nope + rope) k[(r * heads + h) * (nope + rope) + e] = key_rope[r * rope + e - nope];
  else v[(r * heads + h) * value + e - nope - rope] = from[nope + e - nope - rope];
}

/// The backward of latent_keys_values_kernel's kv half: dk [rows, heads·(nope + rope)] and dv
/// [rows, heads·value] → d_kv [rows, heads·(nope + value)] (float32 and/or bf16; either may be null).
template <int = 0>
__global__ void latent_kv_gradient_kernel(const float* dk, const float* dv, long rows, long heads, long nope, long rope, long value,
                                          float* d_kv, __nv_bfloat16* copy) {
  const long width = nope + value, i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * heads * width) return;
  const long e = i % width, rh = i / width;
  const float g = e < nope ? dk[rh * (nope + rope) + e] : dv[rh * value + e - nope];
  if (d_kv) d_kv[i] = g;
  if (copy) copy[i] = __float2bfloat16_rn(g);
}

/// The roped key part's gradient: every head's share added up, in head order (as the CPU does).
/// dk [rows, heads·(nope + rope)] → d_key_rope [rows, rope].
template <int = 0>
__global__ void latent_key_rope_gradient_kernel(const float* dk, long rows, long heads, long nope, long rope, float* d_key_rope) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * rope) return;
  const long r = i / rope, e = i % rope;
  float sum = 0.0f;
  for (long h = 0; h < heads; ++h) sum = __fadd_rn(sum, dk[(r * heads + h) * (nope + rope) + nope + e]);
  d_key_rope[i] = sum;
}

}  // namespace autoround::cuda
