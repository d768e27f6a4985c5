#!/usr/bin/env python3
"""On paper (docs/scale.md): memory and time per block of block-wise AutoRound for MoE models on
8 GPUs of one host, extrapolated from what one H200 measured on dense blocks (docs/speed.md).

The model of a tuning step (counted, then fitted to the measured dense steps):
  step = GEMM FLOPs / R  +  e * tuned weights  (+ communication on several GPUs)
  GEMM FLOPs = 6 * T * (active weights per token)   forward, weight and input gradients
               - 2 * T * (q/k/v weights)            (no input gradient into the block's input)
               + 12 * S^2 * d * heads * batch       attention over the whole square (S = seqlen)
  R: the measured dense step's GEMM rate after the element-wise part (--rate-8b / --rate-70b),
     times --expert-efficiency for experts' GEMMs (a few hundred rows each: assumed, not measured)
  e: the measured element-wise cost per tuned weight (qdq forward + STE backward + SignSGD,
     bench_cuda_qdq on 14336 x 4096: 1.908 ms / 58.7 M weights)
Setup and finish: a forward over all N calibration tokens each (targets; the quantized stream)
plus a per-weight part fitted to the measured setup / finish.
Memory: 18 bytes per tuned weight (bf16 GEMM runs: v, min/max scales, best state, the bf16
operand, gradients; docs/speed.md), the two activation streams in bf16, a workspace budget.

Several GPUs (--gpus G): experts sharded across them (expert parallel, all-to-all of the routed
tokens over NVLink), the dense part (attention, shared experts, dense MLPs) data parallel (each
GPU one G-th of the minibatch, its gradients all-reduced every step), calibration forwards split
G ways. Blocks stay sequential: block b+1's quantized inputs are block b's tuned outputs (the
reference's default two streams); what pipelines is reading and uploading block b+1 and its
full-precision targets (the fp stream does not wait for the tuning).

usage: scale_estimate.py [--steps 50 200] [--gpus 1 8] [measured figures, see --help]
"""
import argparse
from dataclasses import dataclass


@dataclass
class Block:
    name: str
    hidden: int
    attention: float       # tuned attention weights (all projections)
    qkv: float             # of which take the block input (no input gradient)
    heads: int
    head_dim: int          # for the S^2 attention products (qk and v dims averaged for MLA)
    dense_mlp: float       # always-active MLP weights (dense MLP or shared experts)
    expert: float          # weights of one routed expert
    experts: int
    top_k: int
    layers: int            # blocks of this kind

    def total(self):
        return self.attention + self.dense_mlp + self.expert * self.experts

    def active(self):
        return self.attention + self.dense_mlp + self.expert * self.top_k


def shapes():
    llama8b = Block("Llama-3-8B (measured shape)", 4096, 2 * 4096 * 4096 + 2 * 4096 * 1024, 4096 * 4096 + 2 * 4096 * 1024,
                    32, 128, 3 * 4096 * 14336, 0, 0, 0, 32)
    llama70b = Block("Llama-3-70B (measured shape)", 8192, 2 * 8192 * 8192 + 2 * 8192 * 1024, 8192 * 8192 + 2 * 8192 * 1024,
                     64, 128, 3 * 8192 * 28672, 0, 0, 0, 80)
    # Qwen3-235B-A22B: hidden 4096, 94 layers, 64 q heads / 4 KV heads of 128, 128 experts top-8 of 1536
    qwen = Block("Qwen3-235B-A22B", 4096, 2 * 4096 * 8192 + 2 * 4096 * 512, 4096 * 8192 + 2 * 4096 * 512,
                 64, 128, 0, 3 * 4096 * 1536, 128, 8, 94)
    # DeepSeek-V3: hidden 7168, MLA (q_lora 1536, kv_lora 512, 128 heads, qk 128+64, v 128),
    # 58 MoE layers (256 experts top-8 of 2048 + 1 shared) and 3 dense (intermediate 18432)
    mla = 7168 * 1536 + 1536 * 128 * 192 + 7168 * (512 + 64) + 512 * 128 * 256 + 128 * 128 * 7168
    mla_in = 7168 * 1536 + 7168 * (512 + 64)
    ds_moe = Block("DeepSeek-V3 MoE block", 7168, mla, mla_in, 128, 160, 3 * 7168 * 2048, 3 * 7168 * 2048, 256, 8, 58)
    ds_dense = Block("DeepSeek-V3 dense block", 7168, mla, mla_in, 128, 160, 3 * 7168 * 18432, 0, 0, 0, 3)
    return llama8b, llama70b, [qwen, ds_moe, ds_dense]


def gemm_flops(b, tokens, seqlen, batch, dense_share=1.0, expert_share=1.0):
    """(dense FLOPs, expert FLOPs) of one step; shares: the fraction this GPU computes."""
    dense = (6 * tokens * (b.attention + b.dense_mlp) - 2 * tokens * b.qkv
             + 12 * seqlen ** 2 * b.head_dim * b.heads * batch) * dense_share
    experts = 6 * tokens * b.expert * b.top_k * expert_share
    return dense, experts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, nargs="+", default=[50, 200])
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    # measured on one H200 (docs/speed.md, scripts/synthetic-8b.sh): step, setup and finish per block
    p.add_argument("--step-8b", type=float, required=True, help="ms per step, 8B block")
    p.add_argument("--step-70b", type=float, required=True, help="ms per step, 70B block")
    p.add_argument("--setup-8b", type=float, required=True)
    p.add_argument("--setup-70b", type=float, required=True)
    p.add_argument("--finish-8b", type=float, required=True)
    p.add_argument("--finish-70b", type=float, required=True)
    p.add_argument("--elementwise", type=float, default=1.908e-3 / 58.72e6, help="s per tuned weight per step")
    p.add_argument("--expert-efficiency", type=float, default=0.5, help="experts' GEMM rate / the dense GEMM rate (assumed)")
    p.add_argument("--nvlink", type=float, default=350e9, help="bytes/s per GPU for all-reduce and all-to-all (assumed)")
    p.add_argument("--imbalance", type=float, default=1.5,
                   help="routed tokens on the busiest GPU / the mean, with experts sharded (assumed)")
    p.add_argument("--workspace", type=float, default=8.0, help="GiB per GPU for the step's workspace (a BlockMemoryPlan)")
    p.add_argument("--gpu-memory", type=float, default=139.0, help="GiB a GPU has (H200: 139 usable)")
    a = p.parse_args()
    tokens = a.batch * a.seqlen
    n_tokens = a.nsamples * a.seqlen
    llama8b, llama70b, moes = shapes()

    # fit the GEMM rate and the per-weight setup/finish parts to the two measured dense blocks
    fits = {}
    for b, step, setup, finish in ((llama8b, a.step_8b, a.setup_8b, a.finish_8b), (llama70b, a.step_70b, a.setup_70b, a.finish_70b)):
        d, _ = gemm_flops(b, tokens, a.seqlen, a.batch)
        rate = d / (step / 1e3 - a.elementwise * b.total())
        fwd = 2 * n_tokens * b.active() / rate
        fits[b.hidden] = (rate, max(setup - fwd, 0) / b.total(), max(finish - fwd, 0) / b.total())
        print(f"fit {b.name}: GEMM rate {rate / 1e12:.0f} TFLOP/s; setup {fits[b.hidden][1] * 1e9:.2f} s and finish "
              f"{fits[b.hidden][2] * 1e9:.2f} s per 1e9 tuned weights beyond one forward over the calibration")

    print()
    print("| block | tuned weights | active / token | GPUs | GPU memory per GPU | host: block in float32 | step | setup + finish | per block, "
          + ", ".join(f"{s} steps" for s in a.steps) + " | whole model, " + ", ".join(f"{s} steps" for s in a.steps) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in moes:
        rate, setup_w, finish_w = fits[4096] if b.hidden <= 4096 else fits[8192]
        for g in a.gpus:
            dense_w = b.attention + b.dense_mlp
            expert_w = b.expert * b.experts / g
            held = dense_w + expert_w          # dense part replicated, experts sharded
            streams = 2 * n_tokens * b.hidden * 2
            memory = (18 * held + streams) / 2**30 + a.workspace
            d, e = gemm_flops(b, tokens, a.seqlen, a.batch, 1 / g, (a.imbalance if g > 1 else 1.0) / g)
            compute = d / rate + e / (rate * a.expert_efficiency) + a.elementwise * held
            comm = 0.0
            if g > 1:
                comm += 2 * (g - 1) / g * 4 * dense_w / a.nvlink                                  # dense gradients, float32
                comm += 4 * (tokens / g) * b.top_k * b.hidden * 2 * (g - 1) / g / a.nvlink if b.experts else 0  # routed tokens, bf16
            step = compute + comm
            fwd = 2 * n_tokens * b.active() / g / rate
            fixed = 2 * fwd + (setup_w + finish_w) * held
            per_block = [fixed + s * step for s in a.steps]
            fits_gpu = "" if memory <= a.gpu_memory else " (does not fit)"
            host = 4 * b.total() / 2**30
            print(f"| {b.name} | {b.total() / 1e9:.2f} B | {b.active() / 1e9:.2f} B | {g} | {memory:.0f} GiB{fits_gpu} | {host:.0f} GiB "
                  f"| {step * 1e3:.0f} ms "
                  f"| {fixed:.1f} s | " + ", ".join(f"{t:.1f} s" for t in per_block) + " | "
                  + ", ".join(f"{t * b.layers / 60:.1f} min" for t in per_block) + " |")


if __name__ == "__main__":
    main()
