#pragma once
// CUDA kernels of a mixture-of-experts MLP with softmax routing (Qwen3-MoE, Qwen2-MoE, Mixtral;
// GPT-OSS's top-k softmax, expert biases and clamped SwiGLU; DeepSeek-V3's / GLM-4.5's sigmoid
// grouped routing;
// model/moe_mlp.hpp is the CPU original, every formula here is written as it is there). The
// expert GEMMs are cuBLAS calls in cuda::BlockTuningRun, one per expert and projection over the
// rows routed to it.
//
// Layout: a token's top_k choices are "assignments" t·top_k + j (j: rank of preference). They
// are sorted by expert, stably (a block per expert walks the assignments in order), so each
// expert's rows are contiguous and in ascending token order: `order[i]` is the assignment at
// sorted row i, `position[a]` its inverse.
// Every sum over a token's experts is taken in expert-index order (as the CPU's experts loop adds
// them) by one thread: deterministic, no atomics on floats.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "block_kernels.cuh"

namespace autoround::cuda {

namespace device {
/// c[0..top_k): of the experts `allowed(e)`, those with the highest `key(e)`, best first (ties to
/// the lower index).
template <class Key, class Allowed>
__device__ void choose_top_k(int experts, int top_k, int* c, Key key, Allowed allowed) {
  for (int j = 0; j < top_k; ++j) {
    int best = -1;
    for (int e = 0; e < experts; ++e) {
      if (!allowed(e)) continue;
      bool taken = false;
      for (int i = 0; i < j; ++i) taken = taken || c[i] == e;
      if (!taken && (best < 0 || key(e) > key(best))) best = e;
    }
    c[j] = best;
  }
}
/// c[0..top_k): the experts with the highest scores in `row`, best first (ties to the lower index).
__device__ inline void choose_top_k(const float* row, int experts, int top_k, int* c) {
  choose_top_k(experts, top_k, c, [row](int e) { return row[e]; }, [](int) { return true; });
}
}  // namespace device

/// Softmax routing, a thread per token: `scores` [tokens, experts] holds the router logits and
/// gets the probabilities; `chosen` / `weights` [tokens, top_k] the token's top_k experts in
/// order of preference (ties to the lower index) and their probabilities, divided by their sum
/// when `normalize`.
template <int = 0>
__global__ void softmax_route_kernel(float* scores, long tokens, int experts, int top_k, bool normalize, int* chosen, float* weights) {
  const long t = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  float* row = scores + t * experts;
  float top = -INFINITY;
  for (int e = 0; e < experts; ++e) top = fmaxf(top, row[e]);
  float sum = 0.0f;
  for (int e = 0; e < experts; ++e) {
    row[e] = expf(__fsub_rn(row[e], top));
    sum = __fadd_rn(sum, row[e]);
  }
  for (int e = 0; e < experts; ++e) row[e] = __fdiv_rn(row[e], sum);
  int* c = chosen + t * top_k;
  float* w = weights + t * top_k;
  device::choose_top_k(row, experts, top_k, c);
  float chosen_sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    w[j] = row[c[j]];
    chosen_sum = __fadd_rn(chosen_sum, w[j]);
  }
  if (normalize)
    for (int j = 0; j < top_k; ++j) w[j] = __fdiv_rn(w[j], chosen_sum);
}

/// GPT-OSS's routing, a thread per token: `logits` [tokens, experts] (the router's, its bias
/// added) stay as they are; `chosen` the token's top_k experts by logit (ties to the lower index)
/// and `weights` the softmax over those k logits.
template <int = 0>
__global__ void topk_softmax_route_kernel(const float* logits, long tokens, int experts, int top_k, int* chosen, float* weights) {
  const long t = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const float* row = logits + t * experts;
  int* c = chosen + t * top_k;
  float* w = weights + t * top_k;
  device::choose_top_k(row, experts, top_k, c);
  const float top = row[c[0]];
  float sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    w[j] = expf(__fsub_rn(row[c[j]], top));
    sum = __fadd_rn(sum, w[j]);
  }
  for (int j = 0; j < top_k; ++j) w[j] = __fdiv_rn(w[j], sum);
}

/// Its backward, a thread per token: d logit_k = w_k (dw_k − Σ_j w_j dw_j) for the chosen, 0 for
/// the rest (float32 and/or a bf16 copy).
template <int = 0>
__global__ void topk_softmax_route_backward_kernel(const int* chosen, const float* weights, const float* d_weight, long tokens, int experts,
                                                   int top_k, float* d_logits, __nv_bfloat16* d_logits_copy) {
  const long t = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const int* c = chosen + t * top_k;
  const float* w = weights + t * top_k;
  const float* dw = d_weight + t * top_k;
  float wdw = 0.0f;
  for (int j = 0; j < top_k; ++j) wdw = __fadd_rn(wdw, __fmul_rn(w[j], dw[j]));
  for (int e = 0; e < experts; ++e) {
    float d = 0.0f;
    for (int j = 0; j < top_k; ++j)
      if (c[j] == e) d = __fmul_rn(w[j], __fsub_rn(dw[j], wdw));
    if (d_logits) d_logits[t * experts + e] = d;
    if (d_logits_copy) d_logits_copy[t * experts + e] = __float2bfloat16_rn(d);
  }
}

/// DeepSeek-V3's and GLM-4.5's routing, a thread per token: `scores` [tokens, experts] holds the
/// router logits and gets s = sigmoid(logit); the choice is made on s + `correction` (the
/// e_score_correction_bias, [experts]; null: none): the experts in `groups` equal groups, each
/// scored by the sum of its two best, the `top_groups` best groups kept, then the top_k experts
/// among theirs (ties to the lower index, groups and experts alike). `weights` = the chosen s,
/// divided by (their sum + 1e-20) when `normalize`, times `scale` (routed_scaling_factor).
template <int = 0>
__global__ void sigmoid_grouped_route_kernel(float* scores, const float* correction, long tokens, int experts, int groups, int top_groups,
                                             int top_k, bool normalize, float scale, int* chosen, float* weights) {
  const long t = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  float* row = scores + t * experts;
  for (int e = 0; e < experts; ++e) row[e] = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-row[e])));
  auto key = [&](int e) { return correction ? __fadd_rn(row[e], correction[e]) : row[e]; };
  const int per = experts / groups;
  unsigned long long kept = ~0ull;  // groups kept (all with one group)
  if (groups > 1) {
    kept = 0;
    for (int j = 0; j < top_groups; ++j) {
      int best = -1;
      float best_score = 0.0f;
      for (int g = 0; g < groups; ++g) {
        if (kept >> g & 1ull) continue;
        float first = -INFINITY, second = -INFINITY;
        for (int e = g * per; e < (g + 1) * per; ++e) {
          const float k = key(e);
          if (k > first) second = first, first = k;
          else if (k > second) second = k;
        }
        const float score = per > 1 ? __fadd_rn(first, second) : first;
        if (best < 0 || score > best_score) best = g, best_score = score;
      }
      kept |= 1ull << best;
    }
  }
  int* c = chosen + t * top_k;
  float* w = weights + t * top_k;
  device::choose_top_k(experts, top_k, c, key, [&](int e) { return (kept >> (e / per) & 1ull) != 0; });
  float sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    w[j] = row[c[j]];
    sum = __fadd_rn(sum, w[j]);
  }
  for (int j = 0; j < top_k; ++j) {
    if (normalize) w[j] = __fdiv_rn(w[j], __fadd_rn(sum, 1e-20f));
    w[j] = __fmul_rn(w[j], scale);
  }
}

/// Its backward, a thread per token: w_k = scale s_k / S (S = Σ s_chosen + 1e-20) gives
/// dp_k = (scale dw_k − Σ_j dw_j w_j) / S (without `normalize`: scale dw_k), and the sigmoid
/// d logit_e = dp_e s_e (1 − s_e); 0 for the experts not chosen (float32 and/or a bf16 copy).
template <int = 0>
__global__ void sigmoid_grouped_route_backward_kernel(const float* scores, const int* chosen, const float* weights, const float* d_weight,
                                                      long tokens, int experts, int top_k, bool normalize, float scale, float* d_logits,
                                                      __nv_bfloat16* d_logits_copy) {
  const long t = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const float* s = scores + t * experts;
  const int* c = chosen + t * top_k;
  const float* w = weights + t * top_k;
  const float* dw = d_weight + t * top_k;
  float sum = 1e-20f, dot = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    sum = __fadd_rn(sum, s[c[j]]);
    dot = __fadd_rn(dot, __fmul_rn(dw[j], w[j]));
  }
  for (int e = 0; e < experts; ++e) {
    float dp = 0.0f;
    for (int j = 0; j < top_k; ++j)
      if (c[j] == e) dp = normalize ? __fdiv_rn(__fsub_rn(__fmul_rn(scale, dw[j]), dot), sum) : __fmul_rn(scale, dw[j]);
    const float d = __fmul_rn(__fmul_rn(dp, s[e]), __fsub_rn(1.0f, s[e]));
    if (d_logits) d_logits[t * experts + e] = d;
    if (d_logits_copy) d_logits_copy[t * experts + e] = __float2bfloat16_rn(d);
  }
}

/// x[i, c] += bias[expert of sorted row i, c]: each routed row gets its own expert's bias
/// (`bias` [experts, cols]; GPT-OSS's expert biases).
template <int = 0>
__global__ void add_expert_bias_kernel(float* x, const float* bias, const int* chosen, const int* order, long n, long cols) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  const long r = i / cols;
  x[i] = __fadd_rn(x[i], bias[static_cast<long>(chosen[order[r]]) * cols + i % cols]);
}

/// GPT-OSS's clamped SwiGLU (moe_mlp.hpp's gated_unit): g' = min(g, limit), u' = clamp(u, ±limit),
/// act = (u' + 1) · g' σ(alpha g'), into `act` and/or, in bf16, `copy`.
template <int = 0>
__global__ void clamped_swiglu_kernel(const float* gate, const float* up, float* act, __nv_bfloat16* copy, long n, float limit, float alpha) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float gc = fminf(gate[i], limit), uc = fminf(fmaxf(up[i], -limit), limit);
  const float sigma = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-__fmul_rn(alpha, gc))));
  const float a = __fmul_rn(__fadd_rn(uc, 1.0f), __fmul_rn(gc, sigma));
  if (act) act[i] = a;
  if (copy) copy[i] = __float2bfloat16_rn(a);
}

/// Its backward: d_gate = d_act (u' + 1)(σ + alpha g' σ (1 − σ)) where g ≤ limit (else 0), d_up =
/// d_act g' σ where |u| ≤ limit (else 0). Outputs as swiglu_backward_kernel's.
template <int = 0>
__global__ void clamped_swiglu_backward_kernel(const float* gate, const float* up, const float* d_act, float* d_gate, float* d_up,
                                               __nv_bfloat16* d_gate_copy, __nv_bfloat16* d_up_copy, long n, float limit, float alpha) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i], u = up[i], gc = fminf(g, limit), uc = fminf(fmaxf(u, -limit), limit);
  const float sigma = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-__fmul_rn(alpha, gc))));
  const float slope = __fadd_rn(sigma, __fmul_rn(__fmul_rn(__fmul_rn(alpha, gc), sigma), __fsub_rn(1.0f, sigma)));
  const float dg = g <= limit ? __fmul_rn(d_act[i], __fmul_rn(__fadd_rn(uc, 1.0f), slope)) : 0.0f;
  const float du = fabsf(u) <= limit ? __fmul_rn(d_act[i], __fmul_rn(gc, sigma)) : 0.0f;
  if (d_up) d_up[i] = du;
  if (d_gate) d_gate[i] = dg;
  if (d_up_copy) d_up_copy[i] = __float2bfloat16_rn(du);
  if (d_gate_copy) d_gate_copy[i] = __float2bfloat16_rn(dg);
}

/// counts[e] += how many assignments chose expert e.
template <int = 0>
__global__ void count_assignments_kernel(const int* chosen, long n, int* counts) {
  const long a = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (a < n) atomicAdd(counts + chosen[a], 1);  // integers: the counts are exact whatever the order
}

/// offsets[e] = Σ_{e' < e} counts[e'], offsets[experts] = the total (one thread: a few hundred experts).
template <int = 0>
__global__ void expert_offsets_kernel(const int* counts, int experts, int* offsets) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int sum = 0;
  for (int e = 0; e < experts; ++e) {
    offsets[e] = sum;
    sum += counts[e];
  }
  offsets[experts] = sum;
}

/// The stable sort by expert, a block (kRowThreads) per expert: it walks the assignments in
/// order, numbering its own by a prefix sum, so expert e's rows start at offsets[e] in ascending
/// assignment order: order[row] = a and position[a] = row.
template <int = 0>
__global__ void expert_rows_kernel(const int* chosen, long n, const int* offsets, int* order, int* position) {
  __shared__ int scan[kRowThreads];
  const int e = static_cast<int>(blockIdx.x);
  int next = offsets[e];
  for (long base = 0; base < n; base += kRowThreads) {
    const long a = base + threadIdx.x;
    const int mine = a < n && chosen[a] == e ? 1 : 0;
    scan[threadIdx.x] = mine;
    __syncthreads();
    for (int stride = 1; stride < kRowThreads; stride *= 2) {  // inclusive prefix sum
      const int add = threadIdx.x >= stride ? scan[threadIdx.x - stride] : 0;
      __syncthreads();
      scan[threadIdx.x] += add;
      __syncthreads();
    }
    if (mine) {
      const int row = next + scan[threadIdx.x] - 1;
      order[row] = static_cast<int>(a);
      position[a] = row;
    }
    next += scan[kRowThreads - 1];
    __syncthreads();
  }
}

/// out[i, c] = x[token of order[i], c]: each expert's input rows, gathered.
template <class T>
__global__ void gather_routed_rows_kernel(const T* x, const int* order, int top_k, long n, long cols, T* out) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  const long r = i / cols, c = i % cols;
  out[i] = x[static_cast<long>(order[r] / top_k) * cols + c];
}

namespace device {
/// The token's choice with the next expert index above `last` (-1: the lowest): its rank j.
__device__ inline int next_in_expert_order(const int* chosen, int top_k, int last) {
  int j = -1;
  for (int i = 0; i < top_k; ++i)
    if (chosen[i] > last && (j < 0 || chosen[i] < chosen[j])) j = i;
  return j;
}
}  // namespace device

/// out[t, c] = h[t, c] + (Σ_j w_tj · expert_out[position(t, j), c] in expert order
///             + g_t · shared_out[t, c]), g_t = shared_weight[t] (1 without one; no shared
/// expert: shared_out null; h null: no residual, Gemma 4's experts beside the MLP).
template <int = 0>
__global__ void moe_combine_kernel(const float* h, const float* expert_out, const int* chosen, const float* weights, const int* position,
                                   int top_k, const float* shared_out, const float* shared_weight, long tokens, long hidden, float* out) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= tokens * hidden) return;
  const long t = i / hidden, c = i % hidden;
  const int* mine = chosen + t * top_k;
  float sum = 0.0f;
  for (int k = 0, last = -1; k < top_k; ++k) {
    const int j = device::next_in_expert_order(mine, top_k, last);
    last = mine[j];
    const long a = t * top_k + j;
    sum = __fadd_rn(sum, __fmul_rn(weights[a], expert_out[static_cast<long>(position[a]) * hidden + c]));
  }
  if (shared_out) sum = __fadd_rn(sum, shared_weight ? __fmul_rn(shared_weight[t], shared_out[i]) : shared_out[i]);
  out[i] = h ? __fadd_rn(h[i], sum) : sum;
}

/// out[a] = w[a] · scale[chosen[a]] (in place allowed): Gemma 4's per-expert scale of the routing
/// weights after their normalization, and the same factor on their gradients in the backward.
template <int = 0>
__global__ void expert_scale_kernel(const float* w, const int* chosen, const float* scale, long n, float* out) {
  const long a = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (a < n) out[a] = __fmul_rn(w[a], scale[chosen[a]]);
}

/// Per sorted row i (one block each; a = order[i], t its token): d_weight[a] = <d_out[t],
/// expert_out[i]> and dy[i] = w_a · d_out[t] (the expert's output gradient), into float32 and/or
/// a bf16 copy.
template <int = 0>
__global__ void moe_output_grad_kernel(const float* d_out, const float* expert_out, const int* order, const float* weights, int top_k,
                                       long hidden, float* d_weight, float* dy, __nv_bfloat16* dy_copy) {
  __shared__ float shared[kRowThreads];
  const long i = blockIdx.x, a = order[i], t = a / top_k;
  const float* g = d_out + t * hidden;
  const float* y = expert_out + i * hidden;
  const float w = weights[a];
  float dot = 0.0f;
  for (long c = threadIdx.x; c < hidden; c += kRowThreads) {
    dot = __fadd_rn(dot, __fmul_rn(g[c], y[c]));
    const float v = __fmul_rn(w, g[c]);
    if (dy) dy[i * hidden + c] = v;
    if (dy_copy) dy_copy[i * hidden + c] = __float2bfloat16_rn(v);
  }
  dot = device::block_sum(dot, shared);
  if (threadIdx.x == 0) d_weight[a] = dot;
}

/// d_x[t, c] (= or +=) Σ_j dx_rows[position(t, j), c], in expert order: the experts' input
/// gradients back on their tokens.
template <int = 0>
__global__ void moe_scatter_grad_kernel(const float* dx_rows, const int* chosen, const int* position, int top_k, long tokens, long hidden,
                                        bool accumulate, float* d_x) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= tokens * hidden) return;
  const long t = i / hidden, c = i % hidden;
  const int* mine = chosen + t * top_k;
  float sum = accumulate ? d_x[i] : 0.0f;
  for (int k = 0, last = -1; k < top_k; ++k) {
    const int j = device::next_in_expert_order(mine, top_k, last);
    last = mine[j];
    sum = __fadd_rn(sum, dx_rows[static_cast<long>(position[t * top_k + j]) * hidden + c]);
  }
  d_x[i] = sum;
}

/// The router's backward, a thread per token: from dL/dw of its chosen experts (d_weight,
/// [tokens, top_k]) through the normalization (w_j = p_j / S) and the softmax to the logits:
/// d_logits[t, e] = p_e (dp_e − Σ_j p_j dp_j), into float32 and/or a bf16 copy.
template <int = 0>
__global__ void softmax_route_backward_kernel(const float* probabilities, const int* chosen, const float* weights, const float* d_weight,
                                              long tokens, int experts, int top_k, bool normalize, float* d_logits,
                                              __nv_bfloat16* d_logits_copy) {
  const long t = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const float* p = probabilities + t * experts;
  const int* c = chosen + t * top_k;
  const float* w = weights + t * top_k;
  const float* dw = d_weight + t * top_k;
  float sum = 0.0f, dot = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    sum = __fadd_rn(sum, p[c[j]]);
    dot = __fadd_rn(dot, __fmul_rn(dw[j], w[j]));
  }
  float pdp = 0.0f;  // Σ_j p_j dp_j over the chosen (dp is 0 elsewhere)
  for (int j = 0; j < top_k; ++j) {
    const float dp = normalize ? __fdiv_rn(__fsub_rn(dw[j], dot), sum) : dw[j];
    pdp = __fadd_rn(pdp, __fmul_rn(p[c[j]], dp));
  }
  for (int e = 0; e < experts; ++e) {
    float dp = 0.0f;
    for (int j = 0; j < top_k; ++j)
      if (c[j] == e) dp = normalize ? __fdiv_rn(__fsub_rn(dw[j], dot), sum) : dw[j];
    const float d = __fmul_rn(p[e], __fsub_rn(dp, pdp));
    if (d_logits) d_logits[t * experts + e] = d;
    if (d_logits_copy) d_logits_copy[t * experts + e] = __float2bfloat16_rn(d);
  }
}

/// x[i] = sigmoid(x[i]): the shared expert's gate (Qwen2-MoE) from its logits.
template <int = 0>
__global__ void sigmoid_kernel(float* x, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x[i])));
}

/// The gated shared expert's backward, a block per token t: dy[t] = g_t · d_out[t] (float32
/// and/or bf16; g_t = 1 without a gate) and, with a gate, d_gate[t] = <d_out[t], shared_out[t]>
/// g_t (1 − g_t), the gradient of its logit.
template <int = 0>
__global__ void shared_expert_grad_kernel(const float* d_out, const float* shared_out, const float* gate, long hidden, float* dy,
                                          __nv_bfloat16* dy_copy, float* d_gate) {
  __shared__ float shared[kRowThreads];
  const long t = blockIdx.x;
  const float g = gate ? gate[t] : 1.0f;
  float dot = 0.0f;
  for (long c = threadIdx.x; c < hidden; c += kRowThreads) {
    const long i = t * hidden + c;
    if (gate) dot = __fadd_rn(dot, __fmul_rn(d_out[i], shared_out[i]));
    const float v = __fmul_rn(g, d_out[i]);
    if (dy) dy[i] = v;
    if (dy_copy) dy_copy[i] = __float2bfloat16_rn(v);
  }
  if (!gate) return;
  dot = device::block_sum(dot, shared);
  if (threadIdx.x == 0) d_gate[t] = __fmul_rn(dot, __fmul_rn(g, __fsub_rn(1.0f, g)));
}

/// d_x[t, c] += d_gate[t] · w[c]: the shared expert gate's logit gradient back to its input.
template <int = 0>
__global__ void add_outer_kernel(float* d_x, const float* d_gate, const float* w, long tokens, long hidden) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < tokens * hidden) d_x[i] = __fadd_rn(d_x[i], __fmul_rn(d_gate[i / hidden], w[i % hidden]));
}

}  // namespace autoround::cuda
