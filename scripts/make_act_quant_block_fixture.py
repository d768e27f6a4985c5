#!/usr/bin/env python3
"""Write tests/fixtures/act_quant_block.safetensors: the gradients of a small LLaMA block whose four
linear inputs are quantized with auto-round 0.16.1's own activation quantizers (quant_mx for
MXFP4 / MXFP8, nv_fp4_with_static_gs for NVFP4, quant_fp8_sym with a static maximum for
FP8_STATIC), by torch's autograd through them: what the reference's tuned block backpropagates
(its WrapperLinear quantizes each input before the GEMM); FP8_BLOCK's per-token dynamic FP8 too. tests/test_act_quant_block.cpp runs our
block_forward / block_backward with ActivationQuant on the same weights and input and compares.

The block (written out here in torch, float32, CPU): RMSNorm (eps 1e-5), q/k/v, half-split RoPE
(theta 10000, positions per sequence), causal GQA softmax attention (4 heads, 2 KV heads,
head_dim 16), o_proj, residual, RMSNorm, SwiGLU (intermediate 96), down_proj, residual; hidden 64;
2 sequences of 12 tokens. Loss sum(out * R). Weights and input seeded, the input heavy-tailed so
that groups have outliers.

Tensors: the block's weights (q, k, v, o, gate, up, down [out, in]; attn_norm, ffn_norm), x [24, 64],
R [24, 64], absmax [4] (each linear input's largest |value| in the unquantized forward: the static
maxima NVFP4 and FP8_STATIC take), and per scheme S in mxfp4, mxfp8, nvfp4, fp8_static, fp8_block:
S.exact.<linear> (autograd through the quantizers) and S.ste.<linear> (the same forward, the
quantizers' backward replaced by the identity), and S.out [24, 64] (the block's output).

usage: python scripts/make_act_quant_block_fixture.py [OUT.safetensors]
needs: torch, safetensors, auto-round==0.16.1 (CPU wheels are enough).
"""
import math
import sys
import warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
from auto_round.data_type.fp8 import quant_fp8_sym  # noqa: E402
from auto_round.data_type.mxfp import quant_mx  # noqa: E402
from auto_round.data_type.nvfp import nv_fp4_with_static_gs  # noqa: E402

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, SEQS, SEQLEN = 64, 4, 2, 16, 96, 2, 12
LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, heads):
    t = x.view(SEQS, SEQLEN, heads, HEAD_DIM)
    inv = 1.0 / (10000.0 ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
    ang = torch.arange(SEQLEN, dtype=torch.float32)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
    half = HEAD_DIM // 2
    rot = torch.cat([-t[..., half:], t[..., :half]], -1)
    return (t * cos + rot * sin).reshape(SEQS * SEQLEN, heads * HEAD_DIM)


def block(W, x, quant):
    """The block's output; quant(t, i) quantizes linear input i (0: q/k/v, 1: o, 2: gate/up, 3: down)."""
    xn = quant(rms_norm(x, W["attn_norm"]), 0)
    q, k, v = xn @ W["q"].T, xn @ W["k"].T, xn @ W["v"].T
    q, k = rope(q, HEADS), rope(k, KV_HEADS)
    q = q.view(SEQS, SEQLEN, HEADS, HEAD_DIM).transpose(1, 2)
    k = k.view(SEQS, SEQLEN, KV_HEADS, HEAD_DIM).transpose(1, 2).repeat_interleave(HEADS // KV_HEADS, 1)
    v = v.view(SEQS, SEQLEN, KV_HEADS, HEAD_DIM).transpose(1, 2).repeat_interleave(HEADS // KV_HEADS, 1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(HEAD_DIM)
    s = s.masked_fill(torch.triu(torch.ones(SEQLEN, SEQLEN, dtype=torch.bool), 1), float("-inf"))
    a = (s.softmax(-1) @ v).transpose(1, 2).reshape(SEQS * SEQLEN, HEADS * HEAD_DIM)
    h = x + quant(a, 1) @ W["o"].T
    yn = quant(rms_norm(h, W["ffn_norm"]), 2)
    g, u = yn @ W["gate"].T, yn @ W["up"].T
    return h + quant(torch.nn.functional.silu(g) * u, 3) @ W["down"].T


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/act_quant_block.safetensors"
    gen = torch.Generator().manual_seed(11)
    shapes = {"q": (HEADS * HEAD_DIM, HIDDEN), "k": (KV_HEADS * HEAD_DIM, HIDDEN), "v": (KV_HEADS * HEAD_DIM, HIDDEN),
              "o": (HIDDEN, HEADS * HEAD_DIM), "gate": (INTER, HIDDEN), "up": (INTER, HIDDEN), "down": (HIDDEN, INTER)}
    W = {n: (torch.randn(shape, generator=gen) * (0.6 / math.sqrt(shape[1]))).float() for n, shape in shapes.items()}
    W["attn_norm"] = (1 + 0.2 * torch.randn(HIDDEN, generator=gen)).float()
    W["ffn_norm"] = (1 + 0.2 * torch.randn(HIDDEN, generator=gen)).float()
    torch.manual_seed(3)  # the heavy-tailed input (StudentT samples from the global generator)
    x = torch.distributions.StudentT(3.0).sample((SEQS * SEQLEN, HIDDEN)).float()
    R = torch.randn(SEQS * SEQLEN, HIDDEN, generator=gen).float()

    absmax = torch.zeros(4)

    def record(t, i):
        absmax[i] = torch.maximum(absmax[i], t.detach().abs().max())
        return t

    with torch.no_grad():
        block(W, x, record)

    schemes = {
        "mxfp4": lambda t, i: quant_mx(t, bits=4, group_size=32, max_scale=torch.tensor(1.0))[0],
        "mxfp8": lambda t, i: quant_mx(t, bits=8, group_size=32, max_scale=torch.tensor(1.0))[0],
        "nvfp4": lambda t, i: nv_fp4_with_static_gs(t, bits=4, group_size=16, tensor_max=absmax[i].clone())[0],
        "fp8_static": lambda t, i: quant_fp8_sym(t, max_scale=torch.tensor(1.0), tensor_max=absmax[i].clone(), group_size=0)[0],
        # FP8_BLOCK's dynamic inputs, one scale per token and 128 features (here each row: 64 or 96 wide)
        "fp8_block": lambda t, i: quant_fp8_sym(t, max_scale=torch.tensor(1.0), tensor_max=None, group_size=128)[0],
    }
    tensors = {n: t.contiguous() for n, t in W.items()}
    tensors.update({"x": x, "R": R, "absmax": absmax.clone()})
    for name, fn in schemes.items():
        for mode in ("exact", "ste"):
            params = {n: t.clone().requires_grad_(n in LINEARS) for n, t in W.items()}
            if mode == "exact":
                quant = fn
            else:
                def quant(t, i, fn=fn):
                    return t + (fn(t.detach(), i) - t.detach())
            out = block(params, x, quant)
            (out * R).sum().backward()
            for n in LINEARS:
                tensors[f"{name}.{mode}.{n}"] = params[n].grad.contiguous()
            if mode == "exact":
                tensors[f"{name}.out"] = out.detach().contiguous()
        diff = {n: float((tensors[f"{name}.exact.{n}"] - tensors[f"{name}.ste.{n}"]).norm() / tensors[f"{name}.exact.{n}"].norm())
                for n in LINEARS}
        print(name, "relative |exact - ste| per linear:", {n: f"{d:.3g}" for n, d in diff.items()})
    save_file(tensors, out_path, metadata={"made_by": "scripts/make_act_quant_block_fixture.py with auto-round 0.16.1, torch " + torch.__version__})
    print("wrote", out_path)


if __name__ == "__main__":
    main()
