#!/usr/bin/env python3
"""Time the reference algorithm's layer step in PyTorch on the GPU, for the ratio against
bench_cuda_layer_step (same shapes, same GPU, same run of scripts/gpu-tests.sh).

A faithful re-implementation of AutoRound's per-step work for one linear layer (auto_round
data_type/int.py quant_tensor_asym + wrapper + sign_sgd): clipping scales clamped to [0, 1],
group min/max, fp16 scale clamped at 1e-5, zero point and rounding through straight-through
round, clamp to the code range, dequantize; output = X Wq^T against the cached full-precision
output X W^T, MSE loss, autograd backward, SignSGD on v, min_scale and max_scale. Timed in
float32 (TF32 off: our kernels' precision) and under bf16 autocast (the reference's default
"amp" on CUDA). Random data: shape-only timing.
usage: torch_layer_step.py [OUT IN TOKENS_PER_SAMPLE]
"""
import sys

import torch


def round_ste(x):
    return (x.round() - x).detach() + x


def qdq(w, v, min_scale, max_scale, bits=4, group=128):
    maxq = 2**bits - 1
    wg = w.reshape(-1, group)
    vg = v.reshape(-1, group)
    wmin = torch.clamp(wg.min(1).values, max=0) * min_scale.clamp(0, 1)
    wmax = torch.clamp(wg.max(1).values, min=0) * max_scale.clamp(0, 1)
    scale = ((wmax - wmin) / maxq).to(torch.float16).to(w.dtype).clamp(min=1e-5)  # fp16 scale, as the reference
    zp = round_ste(-wmin / scale)
    q = torch.clamp(round_ste(wg / scale[:, None] + vg) + zp[:, None], 0, maxq)
    return (scale[:, None] * (q - zp[:, None])).reshape(w.shape)


def time_step(out, inp, tokens, amp):
    torch.manual_seed(0)
    dev = "cuda"
    w = torch.randn(out, inp, device=dev) * 0.02
    x = torch.randn(tokens, inp, device=dev)
    with torch.no_grad():
        target = x @ w.T
    groups = out * inp // 128
    v = torch.zeros(out, inp, device=dev, requires_grad=True)
    mins = torch.ones(groups, device=dev, requires_grad=True)
    maxs = torch.ones(groups, device=dev, requires_grad=True)
    lr = 5e-3

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            wq = qdq(w, v, mins, maxs)
            y = x @ wq.T
            loss = torch.nn.functional.mse_loss(y.float(), target)
        loss.backward()
        with torch.no_grad():
            for p in (v, mins, maxs):
                p -= lr * torch.sign(p.grad)
                p.grad = None
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        step()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 10


def main():
    out, inp, seqlen = (int(a) for a in sys.argv[1:4]) if len(sys.argv) >= 4 else (14336, 4096, 2048)
    tokens = 8 * seqlen
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"| PyTorch reference step, layer {out} x {inp}, {tokens} tokens | ms |\n|---|---|")
    print(f"| float32 (TF32 off) | {time_step(out, inp, tokens, False):.2f} |")
    print(f"| bf16 autocast (reference default amp) | {time_step(out, inp, tokens, True):.2f} |")


if __name__ == "__main__":
    main()
