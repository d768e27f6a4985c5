#!/usr/bin/env python3
"""Time the reference algorithm's block step in PyTorch on the GPU, for the ratio against
bench_cuda_block_step (same block shape, same batch, same GPU, same run of scripts/gpu-tests.sh).

A faithful re-implementation of AutoRound's per-step work for one LLaMA decoder block
(auto_round wrapper.py + data_type/int.py quant_tensor_asym, compressors' block loop): every one
of the seven linear layers fake-quantized W4G128 asym with its rounding offsets v and clipping
scales (clamped to [0, 1], fp16 scale clamped at 1e-5, straight-through round), the block forward
as transformers' LlamaDecoderLayer computes it (RMSNorm, q/k/v projections, rotate-half RoPE,
repeat_kv + scaled_dot_product_attention with the causal mask, the sdpa attention transformers
uses by default, o_proj, residual, RMSNorm, SwiGLU MLP, residual), MSE against the cached
full-precision output, autograd backward, SignSGD on every v, min_scale and max_scale. Timed
with the block in float32 (TF32 off: our float32 kernels' precision) and as the reference runs
by default on CUDA: weights in bf16 and the block under bf16 autocast. Random data.
usage: torch_block_step.py [SEQLEN]
"""
import sys

import torch
import torch.nn.functional as F

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, BATCH, GROUP, BITS = 4096, 14336, 32, 8, 128, 8, 128, 4


def round_ste(x):
    return (x.round() - x).detach() + x


def qdq(w, v, min_scale, max_scale):
    maxq = 2**BITS - 1
    wg = w.float().reshape(-1, GROUP)
    wmin = torch.clamp(wg.min(1).values, max=0) * min_scale.clamp(0, 1)
    wmax = torch.clamp(wg.max(1).values, min=0) * max_scale.clamp(0, 1)
    scale = ((wmax - wmin) / maxq).to(torch.float16).float().clamp(min=1e-5)
    zp = round_ste(-wmin / scale)
    q = torch.clamp(round_ste(wg / scale[:, None] + v.reshape(-1, GROUP)) + zp[:, None], 0, maxq)
    return (scale[:, None] * (q - zp[:, None])).reshape(w.shape).to(w.dtype)


def rms_norm(x, g, eps=1e-5):
    dtype = x.dtype
    x = x.float()
    return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def block_forward(x, w, norms, cos, sin):
    b, t, _ = x.shape
    h = rms_norm(x, norms[0])
    q = F.linear(h, w[0]).view(b, t, HEADS, HEAD_DIM).transpose(1, 2)
    k = F.linear(h, w[1]).view(b, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
    v = F.linear(h, w[2]).view(b, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = HEADS // KV_HEADS
    k = k[:, :, None].expand(b, KV_HEADS, rep, t, HEAD_DIM).reshape(b, HEADS, t, HEAD_DIM)
    v = v[:, :, None].expand(b, KV_HEADS, rep, t, HEAD_DIM).reshape(b, HEADS, t, HEAD_DIM)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, HEADS * HEAD_DIM)
    x = x + F.linear(o, w[3])
    h = rms_norm(x, norms[1])
    return x + F.linear(F.silu(F.linear(h, w[4])) * F.linear(h, w[5]), w[6])


def time_step(seqlen, amp):
    torch.manual_seed(0)
    dev = "cuda"
    dtype = torch.bfloat16 if amp else torch.float32
    shapes = [(HEADS * HEAD_DIM, HIDDEN), (KV_HEADS * HEAD_DIM, HIDDEN), (KV_HEADS * HEAD_DIM, HIDDEN),
              (HIDDEN, HEADS * HEAD_DIM), (INTER, HIDDEN), (INTER, HIDDEN), (HIDDEN, INTER)]
    w = [(torch.randn(s, device=dev) * 0.02).to(dtype) for s in shapes]
    norms = [torch.ones(HIDDEN, device=dev, dtype=dtype) for _ in range(2)]
    x = torch.randn(BATCH, seqlen, HIDDEN, device=dev).to(dtype)
    inv = 1.0 / (500000.0 ** (torch.arange(0, HEAD_DIM, 2, device=dev).float() / HEAD_DIM))
    angles = torch.outer(torch.arange(seqlen, device=dev).float(), inv)
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        target = block_forward(x, w, norms, cos, sin).float()
    params = []
    for s in shapes:
        groups = s[0] * s[1] // GROUP
        params.append([torch.zeros(s, device=dev, requires_grad=True),
                       torch.ones(groups, device=dev, requires_grad=True),
                       torch.ones(groups, device=dev, requires_grad=True)])
    lr = 5e-3

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            wq = [qdq(wi, *p) for wi, p in zip(w, params)]
            out = block_forward(x, wq, norms, cos, sin)
            loss = F.mse_loss(out.float(), target)
        loss.backward()
        with torch.no_grad():
            for group in params:
                for p in group:
                    p -= lr * torch.sign(p.grad)
                    p.grad = None
        return loss

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    repeats = 3 if not amp else 10
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        step()
    stop.record()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return start.elapsed_time(stop) / repeats, peak


def main():
    seqlen = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"| PyTorch {torch.__version__} reference block step, LLaMA-3-8B block, {BATCH} x {seqlen} tokens | ms | peak GiB |")
    print("|---|---|---|")
    for name, amp in (("float32 (TF32 off)", False), ("bf16 weights + autocast (reference default amp)", True)):
        ms, peak = time_step(seqlen, amp)
        print(f"| {name} | {ms:.1f} | {peak:.1f} |")


if __name__ == "__main__":
    main()
