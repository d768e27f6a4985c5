#pragma once
// CUDA kernels of a LLaMA decoder block's forward and backward (model/llama_block.hpp is the CPU
// original; every formula here is written as it is there): RMSNorm, RoPE, causal softmax,
// SwiGLU, Qwen2's projection biases, and the sum over the query heads that share a KV head.
// The GEMMs (projections and attention products) are cuBLAS calls in cuda::BlockTuningRun.
//
// Row kernels (RMSNorm, softmax) give each row one thread block and reduce in float32 through
// a fixed tree: deterministic, but in another order than the CPU's (Eigen's vectorised sums),
// so results agree to rounding, not bit for bit. Element-wise kernels round every operation
// explicitly (no fused multiply-add), as the CPU build (-ffp-contract=off).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "../attention_tiles.hpp"

namespace autoround::cuda {

namespace device {

struct Add {
  __device__ float operator()(float a, float b) const { return __fadd_rn(a, b); }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/// One float per thread combined over a block of 256 threads by a fixed tree; every thread gets it.
template <class Op>
__device__ inline float block_reduce(float value, float* shared /* [256] */, Op op) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = 128; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  const float total = shared[0];
  __syncthreads();
  return total;
}
__device__ inline float block_sum(float value, float* shared) { return block_reduce(value, shared, Add{}); }
__device__ inline float block_max(float value, float* shared) { return block_reduce(value, shared, Max{}); }

}  // namespace device

constexpr int kRowThreads = 256;  ///< block size of the row kernels (block_sum assumes it)

// sums[c] += Σ_r x[r, c]² over a row-major [rows, cols] matrix (input importance, clip_search.hpp),
// in two passes with a fixed summation order (deterministic, no atomics): column_square_chunk_kernel
// sums each chunk of kColumnChunkRows rows (a block of 32 columns × 8 row strides, the 8 partial
// sums added in order), column_square_total_kernel adds a column's chunk sums in chunk order.
// (One thread per column over every row left most of the GPU idle: 32 blocks at hidden 4096.)
constexpr long kColumnChunkRows = 256;
template <class T>
__global__ void column_square_chunk_kernel(const T* x, long rows, long cols, float* chunk_sums) {
  __shared__ float partial[8][33];
  const long c = static_cast<long>(blockIdx.x) * 32 + threadIdx.x, first = static_cast<long>(blockIdx.y) * kColumnChunkRows;
  const long last = first + kColumnChunkRows < rows ? first + kColumnChunkRows : rows;
  float s = 0.0f;
  if (c < cols)
    for (long r = first + threadIdx.y; r < last; r += 8) {
      const float v = static_cast<float>(x[r * cols + c]);
      s = __fadd_rn(s, __fmul_rn(v, v));
    }
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  for (int y = 1; y < 8; ++y) s = __fadd_rn(s, partial[y][threadIdx.x]);
  chunk_sums[blockIdx.y * cols + c] = s;
}
template <int = 0>
__global__ void column_square_total_kernel(const float* chunk_sums, long chunks, long cols, float* sums) {
  const long c = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (long k = 0; k < chunks; ++k) s = __fadd_rn(s, chunk_sums[k * cols + c]);
  sums[c] = __fadd_rn(sums[c], s);
}
/// The two passes above on `stream`; `scratch` holds at least ⌈rows / kColumnChunkRows⌉ · cols floats.
template <class T>
void column_square_sum(const T* x, long rows, long cols, float* sums, float* scratch, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const long chunks = (rows + kColumnChunkRows - 1) / kColumnChunkRows;
  column_square_chunk_kernel<T><<<dim3(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(chunks)), dim3(32, 8), 0, stream>>>(
      x, rows, cols, scratch);
  column_square_total_kernel<><<<static_cast<unsigned>((cols + 127) / 128), 128, 0, stream>>>(scratch, chunks, cols, sums);
}

/// out[r] = x[r] ⊙ g / sqrt(mean(x[r]²) + eps); inv_rms[r] keeps 1/sqrt(...) for the backward.
/// One block per row. Also per-head norms (Qwen3): rows = tokens × heads, cols = head_dim.
/// Outputs (either may be null): float32 `out`, and `copy` in bf16 (a GEMM operand).
template <int = 0>
__global__ void rms_norm_kernel(const float* x, const float* g, float* out, __nv_bfloat16* copy, float* inv_rms, long cols,
                                float eps) {
  __shared__ float shared[kRowThreads];
  const float* row = x + blockIdx.x * cols;
  float sum = 0.0f;
  for (long i = threadIdx.x; i < cols; i += kRowThreads) sum = __fadd_rn(sum, __fmul_rn(row[i], row[i]));
  const float mean_square = __fdiv_rn(device::block_sum(sum, shared), static_cast<float>(cols));
  const float r = __fdiv_rn(1.0f, sqrtf(__fadd_rn(mean_square, eps)));
  if (threadIdx.x == 0) inv_rms[blockIdx.x] = r;
  for (long i = threadIdx.x; i < cols; i += kRowThreads) {
    const float value = __fmul_rn(__fmul_rn(row[i], g[i]), r);
    if (out) out[blockIdx.x * cols + i] = value;
    if (copy) copy[blockIdx.x * cols + i] = __float2bfloat16_rn(value);
  }
}

/// dx = (residual +) r u − x r³ (u·x) / d, with u = g ⊙ dy and r = inv_rms of the row; into
/// `dx` and/or, in bf16, `copy` (either may be null).
template <int = 0>
__global__ void rms_norm_backward_kernel(const float* x, const float* g, const float* inv_rms, const float* dy,
                                         const float* residual, float* dx, __nv_bfloat16* copy, long cols) {
  __shared__ float shared[kRowThreads];
  const long base = blockIdx.x * cols;
  float dot = 0.0f;
  for (long i = threadIdx.x; i < cols; i += kRowThreads) dot = __fadd_rn(dot, __fmul_rn(__fmul_rn(dy[base + i], g[i]), x[base + i]));
  const float u_dot_x = device::block_sum(dot, shared);
  const float r = inv_rms[blockIdx.x];
  const float c = __fdiv_rn(__fmul_rn(__fmul_rn(__fmul_rn(r, r), r), u_dot_x), static_cast<float>(cols));
  for (long i = threadIdx.x; i < cols; i += kRowThreads) {
    const float value = __fsub_rn(__fmul_rn(r, __fmul_rn(dy[base + i], g[i])), __fmul_rn(x[base + i], c));
    const float total = residual ? __fadd_rn(residual[base + i], value) : value;
    if (dx) dx[base + i] = total;
    if (copy) copy[base + i] = __float2bfloat16_rn(total);
  }
}

/// Rotate each head's pairs in place: rows are tokens (position = row % seqlen), `table` holds
/// (cos, sin) per position and pair; direction −1 is the inverse (the backward). Only each
/// head's first `rotary` dimensions rotate (partial rotary: Phi-4-mini), paired within them; the
/// bf16 `copy` gets the rotated pairs only (with partial rotary the caller refreshes it whole).
template <int = 0>
__global__ void rope_kernel(float* x, __nv_bfloat16* copy, const float2* table, long rows, long heads, long head_dim,
                            long seqlen, bool adjacent_pairs, float direction, long rotary) {
  const long half = rotary / 2;
  const long id = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (id >= rows * heads * half) return;
  const long i = id % half, h = (id / half) % heads, r = id / (half * heads);
  const float2 cs = table[(r % seqlen) * half + i];
  const float sin_a = __fmul_rn(direction, cs.y);
  float* head = x + r * heads * head_dim + h * head_dim;
  const long a = adjacent_pairs ? 2 * i : i, b = adjacent_pairs ? 2 * i + 1 : i + half;
  const float x0 = head[a], x1 = head[b];
  const float y0 = __fsub_rn(__fmul_rn(x0, cs.x), __fmul_rn(x1, sin_a)), y1 = __fadd_rn(__fmul_rn(x0, sin_a), __fmul_rn(x1, cs.x));
  head[a] = y0;
  head[b] = y1;
  if (copy) {
    __nv_bfloat16* out = copy + r * heads * head_dim + h * head_dim;
    out[a] = __float2bfloat16_rn(y0);
    out[b] = __float2bfloat16_rn(y1);
  }
}

/// The part of row t of an attention square that the causal tiles' GEMMs write and read
/// (backend/attention_tiles.hpp): the columns [lo, hi) of t's tile of `tile` rows, hi its last
/// row + 1. tile = seqlen: the whole row.
struct TileColumns {
  long lo, hi;
  __device__ TileColumns(long t, long seqlen, long tile, long window) {
    const long first_row = t / tile * tile;
    hi = first_row + tile < seqlen ? first_row + tile : seqlen;
    lo = tile_first_key(first_row, tile, window);
  }
};

/// Causal softmax of attention scores: one block per row of a [seqlen, seqlen] matrix (rows of
/// all matrices stacked); entries after the row's own position become 0, and with a sliding
/// `window` (> 0) those before t − window + 1 too. Only the row's tile columns (TileColumns) are
/// read and written: the rest of the square is never computed. The probabilities go to `scores`
/// itself (float32, may be null: then `scores` is only scratch) and/or, in bf16, to `copy` (the
/// next GEMMs' operand). `sinks` (GPT-OSS; null: none): one more logit per head in each row's
/// softmax whose probability is dropped; row r belongs to (sequence, head) pair first_pair + r /
/// seqlen, head = pair % heads. The backward needs nothing more (the sink's column has no dP).
/// `cap` > 0 (Gemma 2's attention soft-capping): each score s becomes cap · tanh(s / cap) first,
/// and the row's log-sum-exp goes to `lse[row]`, from which the backward recovers the capped
/// scores (log P + lse) and so tanh's derivative without keeping another square.
template <int = 0>
__global__ void causal_softmax_kernel(float* scores, bool keep_float, __nv_bfloat16* copy, long seqlen, long tile, long window = 0,
                                      const float* sinks = nullptr, long heads = 1, long first_pair = 0, float cap = 0.0f,
                                      float* lse = nullptr) {
  __shared__ float shared[kRowThreads];
  const long t = blockIdx.x % seqlen, first = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
  const TileColumns columns(t, seqlen, tile, window);
  float* row = scores + blockIdx.x * seqlen;
  float max = -INFINITY;
  for (long j = first + threadIdx.x; j <= t; j += kRowThreads) {  // (each thread reads back only the entries it capped)
    if (cap > 0.0f) row[j] = __fmul_rn(cap, tanhf(__fdiv_rn(row[j], cap)));
    max = fmaxf(max, row[j]);
  }
  max = device::block_max(max, shared);
  const float sink = sinks ? sinks[(first_pair + static_cast<long>(blockIdx.x) / seqlen) % heads] : 0.0f;
  if (sinks) max = fmaxf(max, sink);
  float sum = 0.0f;
  for (long j = first + threadIdx.x; j <= t; j += kRowThreads) {
    const float e = expf(__fsub_rn(row[j], max));
    row[j] = e;
    sum = __fadd_rn(sum, e);
  }
  sum = device::block_sum(sum, shared);
  if (sinks) sum = __fadd_rn(sum, expf(__fsub_rn(sink, max)));
  if (lse && threadIdx.x == 0) lse[blockIdx.x] = __fadd_rn(max, logf(sum));
  for (long j = columns.lo + threadIdx.x; j < columns.hi; j += kRowThreads) {
    const float p = j >= first && j <= t ? __fdiv_rn(row[j], sum) : 0.0f;
    if (keep_float) row[j] = p;
    if (copy) copy[blockIdx.x * seqlen + j] = __float2bfloat16_rn(p);
  }
}

/// Softmax backward: dS = scale · P ⊙ (dP − Σ_j P_j dP_j), row by row, over the row's tile
/// columns (outside them dP was never computed; P is 0 there). dP comes in `dp`; dS goes back to
/// `dp` (when keep_float) and/or, in bf16, to `copy`. P is float32 or bf16. With soft-capping
/// (`cap` > 0, `lse` from causal_softmax_kernel), also × tanh's derivative 1 − (c / cap)² at the
/// capped score c = log P + lse (where P is 0 the product is 0 whatever the factor).
template <class P>
__global__ void softmax_backward_kernel(const P* p, float* dp, bool keep_float, __nv_bfloat16* copy, long seqlen, long tile, long window,
                                        float scale, float cap = 0.0f, const float* lse = nullptr) {
  __shared__ float shared[kRowThreads];
  const long t = blockIdx.x % seqlen, base = blockIdx.x * seqlen;
  const TileColumns columns(t, seqlen, tile, window);
  float dot = 0.0f;
  for (long j = columns.lo + threadIdx.x; j <= t; j += kRowThreads)
    dot = __fadd_rn(dot, __fmul_rn(static_cast<float>(p[base + j]), dp[base + j]));
  dot = device::block_sum(dot, shared);
  for (long j = columns.lo + threadIdx.x; j < columns.hi; j += kRowThreads) {
    const float pj = static_cast<float>(p[base + j]);
    float ds = j <= t ? __fmul_rn(__fsub_rn(__fmul_rn(pj, dp[base + j]), __fmul_rn(pj, dot)), scale) : 0.0f;
    if (cap > 0.0f && pj > 0.0f) {
      const float capped = __fdiv_rn(__fadd_rn(logf(pj), lse[blockIdx.x]), cap);
      ds = __fmul_rn(ds, __fsub_rn(1.0f, __fmul_rn(capped, capped)));
    }
    if (keep_float) dp[base + j] = ds;
    if (copy) copy[base + j] = __float2bfloat16_rn(ds);
  }
}

/// act = silu(gate) ⊙ up, into `act` and/or, in bf16, `copy`.
template <int = 0>
__global__ void swiglu_kernel(const float* gate, const float* up, float* act, __nv_bfloat16* copy, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  const float a = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
  if (act) act[i] = a;
  if (copy) copy[i] = __float2bfloat16_rn(a);
}

/// d_up = d_act · silu(gate);  d_gate = d_act · up · σ(gate) (1 + gate (1 − σ(gate))). Into
/// float32 outputs and/or bf16 copies (any may be null).
template <int = 0>
__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* d_act, float* d_gate, float* d_up,
                                       __nv_bfloat16* d_gate_copy, __nv_bfloat16* d_up_copy, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i], sigma = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
  const float du = __fmul_rn(__fmul_rn(d_act[i], g), sigma);
  const float dg = __fmul_rn(__fmul_rn(__fmul_rn(d_act[i], up[i]), sigma), __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sigma))));
  if (d_up) d_up[i] = du;
  if (d_gate) d_gate[i] = dg;
  if (d_up_copy) d_up_copy[i] = __float2bfloat16_rn(du);
  if (d_gate_copy) d_gate_copy[i] = __float2bfloat16_rn(dg);
}

/// GeGLU (Gemma): act = gelu_tanh(gate) ⊙ up, gelu_tanh(g) = ½ g (1 + tanh(√(2/π)(g + 0.044715 g³))),
/// into `act` and/or, in bf16, `copy`.
template <int = 0>
__global__ void geglu_kernel(const float* gate, const float* up, float* act, __nv_bfloat16* copy, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  const float th = tanhf(__fmul_rn(0.7978845608028654f, __fadd_rn(g, __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, g), g), g))));
  const float a = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, th)), up[i]);
  if (act) act[i] = a;
  if (copy) copy[i] = __float2bfloat16_rn(a);
}

/// GeGLU's backward: d_up = d_act · gelu_tanh(g); d_gate = d_act · up · (½ (1 + t) + ½ g (1 − t²)
/// √(2/π) (1 + 3·0.044715 g²)), t the forward's tanh (recomputed). Outputs as swiglu_backward_kernel's.
template <int = 0>
__global__ void geglu_backward_kernel(const float* gate, const float* up, const float* d_act, float* d_gate, float* d_up,
                                      __nv_bfloat16* d_gate_copy, __nv_bfloat16* d_up_copy, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i], k0 = 0.7978845608028654f, k1 = 0.044715f;
  const float th = tanhf(__fmul_rn(k0, __fadd_rn(g, __fmul_rn(__fmul_rn(__fmul_rn(k1, g), g), g))));
  const float du = __fmul_rn(__fmul_rn(__fmul_rn(d_act[i], 0.5f), g), __fadd_rn(1.0f, th));
  const float slope = __fadd_rn(__fmul_rn(0.5f, __fadd_rn(1.0f, th)),
                                __fmul_rn(__fmul_rn(__fmul_rn(__fmul_rn(0.5f, g), __fsub_rn(1.0f, __fmul_rn(th, th))), k0),
                                          __fadd_rn(1.0f, __fmul_rn(__fmul_rn(__fmul_rn(3.0f, k1), g), g))));
  const float dg = __fmul_rn(__fmul_rn(d_act[i], up[i]), slope);
  if (d_up) d_up[i] = du;
  if (d_gate) d_gate[i] = dg;
  if (d_up_copy) d_up_copy[i] = __float2bfloat16_rn(du);
  if (d_gate_copy) d_gate_copy[i] = __float2bfloat16_rn(dg);
}

/// out[i] = a[i] + b[i] (a sandwich norm's output back onto the residual).
template <int = 0>
__global__ void add_kernel(const float* a, const float* b, float* out, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __fadd_rn(a[i], b[i]);
}

/// x[r, c] += bias[c] (Qwen2's q/k/v projection biases).
template <int = 0>
__global__ void add_bias_kernel(float* x, const float* bias, long rows, long cols) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < rows * cols) x[i] = __fadd_rn(x[i], bias[i % cols]);
}

/// Grouped-query attention's backward: the gradients of the query heads that share a KV head
/// add up, in head order. per_head [rows, kv_heads·group·head_dim] → out [rows, kv_heads·head_dim].
template <int = 0>
__global__ void sum_head_groups_kernel(const float* per_head, float* out, long rows, long kv_heads, long group, long head_dim) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * kv_heads * head_dim) return;
  const long r = i / (kv_heads * head_dim), kv = (i / head_dim) % kv_heads, e = i % head_dim;
  const float* from = per_head + r * kv_heads * group * head_dim + kv * group * head_dim + e;
  float sum = 0.0f;
  for (long g = 0; g < group; ++g) sum = __fadd_rn(sum, from[g * head_dim]);
  out[i] = sum;
}

/// grad = (out − target) · factor: the loss gradient 2 (out − target) / N; `copy` (may be
/// null) gets it in bf16.
template <int = 0>
__global__ void scaled_difference_kernel(const float* out, const float* target, float* grad, __nv_bfloat16* copy, float factor,
                                         long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = __fmul_rn(__fsub_rn(out[i], target[i]), factor);
  grad[i] = g;
  if (copy) copy[i] = __float2bfloat16_rn(g);
}

/// *flag = 1 when x holds a NaN or an infinity (benign race: every writer writes 1).
template <int = 0>
__global__ void nonfinite_kernel(const float* x, long n, int* flag) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n; i += static_cast<long>(gridDim.x) * blockDim.x)
    if (!isfinite(x[i])) *flag = 1;
}

/// Zero the masked rows (positions) of a and b, [rows, cols] each: mask[r] = 0 drops row r
/// from the loss (BlockCalibration::masks).
template <int = 0>
__global__ void mask_rows_kernel(float* a, float* b, const float* mask, long cols, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n || mask[i / cols] != 0.0f) return;
  a[i] = 0.0f;
  b[i] = 0.0f;
}

}  // namespace autoround::cuda
