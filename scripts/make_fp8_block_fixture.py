#!/usr/bin/env python3
"""Writes tests/fixtures/fp8_block.safetensors: auto-round 0.16.1's FP8_BLOCK (group_size
(128, 128): E4M3 weights under one float32 scale per 128 x 128 tile, inputs E4M3 per token and
128 features) on deterministic data, with autograd's gradients. tests/test_float_quantizer.cpp
checks FloatQuantizer<Fp8Block> (through TunableWeight) and ActivationQuant against it.

  tiled.*   a 256 x 384 weight (2 x 3 whole tiles) through the package's WrapperLinear._qdq_weight,
            the function its tuning calls, with nonzero rounding offsets v and max_scale != 1:
            out (the dequantized weight), scale [2, 3], grad_v and grad_max_scale of sum(out * R).
  ragged.*  a 200 x 300 weight (tiles of 72 rows and 44 columns at the edges). The package's tuning
            fails on such shapes (WrapperLinear makes floor(200 / 128) x floor(300 / 128) max_scales
            while quant_block_fp_sym pads to ceil): here quant_block_fp_sym is called directly, as
            the wrapper calls it, with a max_scale per padded tile; what its tuning would compute.
  act.*     x [12, 300] through quant_fp8_sym with group_size 128 (the rows padded to 384 with
            zeros), as WrapperLinear._qdq_act quantizes FP8_BLOCK's inputs: out and dL/dx of
            sum(out * Rx).

usage: python scripts/make_fp8_block_fixture.py [OUT.safetensors]
needs: torch, safetensors, auto-round==0.16.1 (CPU wheels are enough).
"""
import math
import sys
import warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
from auto_round.data_type.fp8 import quant_block_fp_sym, quant_fp8_sym  # noqa: E402
from auto_round.wrapper import WrapperLinear  # noqa: E402


# Inputs from integer formulas that tests/test_float_quantizer.cpp computes the same way (every
# value an integer divided by an integer in float32, times a power of two: exact on both sides),
# so the file holds only the results.
def ramp(n, mul, mod, add=0):
    return (torch.arange(n, dtype=torch.int64) * mul + add) % mod


def weight(rows, cols):
    w = (ramp(rows * cols, 7919, 20011, 13) - 10005).float() / 10005.0 / 64.0
    w = w.reshape(rows, cols) * torch.tensor([2.0 ** (r % 5 - 2) for r in range(rows)])[:, None]
    w[3, 5] = 0.9     # outliers that set their tile's scale
    w[130, 200] = -1.7
    w[70, 250] = 2.5
    w[150:160, 10:20] = 0.0
    return w


def offsets(rows, cols):
    v = (ramp(rows * cols, 104729, 901) - 450).float() / 1000.0
    v[0:4] = 0.0  # some elements at plain round-to-nearest
    return v.reshape(rows, cols)


def grad_out(rows, cols):
    return ((ramp(rows * cols, 15485863, 1999) - 999).float() / 999.0).reshape(rows, cols)


def clip_scales(n):
    ms = (0.8 + 0.15 * torch.cos(torch.arange(n, dtype=torch.float64))).float()
    ms[::4] = 1.0
    return ms


def tiles(t, rows, cols):  # [rows, cols] -> padded [Mb, Nb, 128, 128], as reshape_pad_tensor_by_group_size
    Mb, Nb = math.ceil(rows / 128), math.ceil(cols / 128)
    p = torch.nn.functional.pad(t, (0, Nb * 128 - cols, 0, Mb * 128 - rows))
    return p.view(Mb, 128, Nb, 128).permute(0, 2, 1, 3).contiguous()


def tiled_case(out):
    rows, cols = 256, 384
    W, R = weight(rows, cols), grad_out(rows, cols)
    lin = torch.nn.Linear(cols, rows, bias=False)
    lin.weight.data.copy_(W)
    lin.weight.requires_grad_(False)
    for key, val in dict(bits=8, group_size=(128, 128), sym=True, data_type="fp", act_bits=16, act_group_size=128, act_sym=True,
                         act_data_type="fp", act_dynamic=True, scale_dtype=torch.float16).items():
        setattr(lin, key, val)
    wr = WrapperLinear(lin, enable_minmax_tuning=True, enable_torch_compile=False, device="cpu")
    assert tuple(wr.value.shape) == (2, 3, 128, 128) and tuple(wr.max_scale.shape) == (2, 3), (wr.value.shape, wr.max_scale.shape)
    v = offsets(rows, cols)
    wr.value.data.copy_(tiles(v, rows, cols))
    wr.max_scale.data.copy_(clip_scales(6).reshape(2, 3))
    q, scale, _ = wr._qdq_weight(wr.value, wr.min_scale, wr.max_scale)
    (q * R).sum().backward()
    g = wr.value.grad.permute(0, 2, 1, 3).reshape(256, 384)
    out.update({"tiled.max_scale": wr.max_scale.detach().reshape(2, 3).clone(), "tiled.out": q.detach(), "tiled.scale": scale.detach().float(), "tiled.grad_v": g.contiguous(),
                "tiled.grad_max_scale": wr.max_scale.grad.clone()})
    assert wr.min_scale.grad is None


def ragged_case(out):
    rows, cols = 200, 300
    W, R, v = weight(rows, cols), grad_out(rows, cols), offsets(rows, cols)
    vt = tiles(v, rows, cols).requires_grad_(True)
    ms = clip_scales(6).reshape(2, 3).requires_grad_(True)
    blocks = tiles(W, rows, cols)  # the wrapper's weight_min / weight_max
    wmin = torch.clamp(blocks.amin(dim=(-2, -1)), max=0)
    wmax = torch.clamp(blocks.amax(dim=(-2, -1)), min=0)
    q, scale, _ = quant_block_fp_sym(W, max_scale=ms, tensor_max=wmax, tensor_min=wmin, group_size=(128, 128), v=vt)
    (q * R).sum().backward()
    g = vt.grad.permute(0, 2, 1, 3).reshape(256, 384)[:rows, :cols]
    out.update({"ragged.max_scale": ms.detach().clone(), "ragged.out": q.detach(), "ragged.scale": scale.detach().float(), "ragged.grad_v": g.contiguous(),
                "ragged.grad_max_scale": ms.grad.clone()})


def activation_case(out):
    T, H = 12, 300
    k = torch.arange(T * H, dtype=torch.float64).reshape(T, H)
    x = (torch.sin(0.31 * k) * torch.exp(0.02 * (k % 37)) * 2.5).float()
    x[2, 17] = 40.0
    x[4, 260] = -900.0   # a group whose maximum sits in the padded last group
    x[5, 128:256] = 0.0  # an all-zero group: the scale's floor 1 / (448 · 512)
    x[7] *= 1e-4
    Rx = torch.cos(0.53 * k + 0.2).float()
    xg = x.clone().requires_grad_(True)
    q = quant_fp8_sym(xg, bits=8, group_size=128, max_scale=torch.tensor(1.0), tensor_max=None)[0]
    (q * Rx).sum().backward()
    out.update({"act.x": x, "act.out": q.detach(), "act.grad_out": Rx, "act.grad_x": xg.grad.clone()})


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/fp8_block.safetensors"
    out = {}
    tiled_case(out)
    ragged_case(out)
    activation_case(out)
    save_file({k: v.contiguous() for k, v in out.items()}, path,
              metadata={"made_by": "scripts/make_fp8_block_fixture.py with auto-round 0.16.1, torch " + torch.__version__})
    print("wrote", path)


if __name__ == "__main__":
    main()
