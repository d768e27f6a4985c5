#!/usr/bin/env python3
"""Write tests/fixtures/reference_packing.safetensors with AutoRound's own packers
(pip install auto-round==0.16.1 torch safetensors numpy; torch's CPU path is enough):
  auto_round  -> auto_round_extension/torch/qlinear_torch.QuantLinear.pack     (zero points stored)
  auto_gptq   -> auto_round_extension/torch/qlinear_torch_zp.QuantLinear.pack  (GPTQ v1: zero - 1, g_idx)
  auto_awq    -> auto_round/export/export_to_awq/utils.WQLinear_GEMM.from_linear
For each case the fixture holds the inputs (CASE.codes u8 [out,in], CASE.scale f16 [out,groups],
CASE.zero i32 [out,groups]) and the reference's outputs (CASE.qweight, CASE.qzeros, CASE.scales
and, for GPTQ, CASE.g_idx); the metadata maps CASE to "format bits group_size sym".
The layer handed to the packer has weight = scale * (code - zero) in float32, from which the
packers re-derive the codes by round(W / scale + zero), exactly as after AutoRound's tuning.
usage: make_pack_fixtures.py OUT.safetensors
"""
import math
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

from auto_round_extension.torch.qlinear_torch import QuantLinear as AutoRoundLinear
from auto_round_extension.torch.qlinear_torch_zp import QuantLinear as GptqV1Linear
from auto_round.export.export_to_awq.utils import WQLinear_GEMM

# name: (format, bits, group_size, sym, out, in, zero_point_zero)
CASES = {
    "ar_w2g32": ("auto_round", 2, 32, False, 64, 128, False),
    "ar_w3g32": ("auto_round", 3, 32, False, 64, 128, False),
    "ar_w4g32": ("auto_round", 4, 32, False, 64, 128, False),
    "ar_w8g32": ("auto_round", 8, 32, False, 64, 128, False),
    "ar_w4g64_short": ("auto_round", 4, 64, False, 32, 96, False),  # last group 32 of 64
    "ar_w4g32_sym": ("auto_round", 4, 32, True, 64, 128, False),
    "gptq_w4g32": ("auto_gptq", 4, 32, False, 64, 128, False),
    "gptq_w3g32": ("auto_gptq", 3, 32, False, 64, 128, False),
    "gptq_w2g32": ("auto_gptq", 2, 32, False, 64, 64, False),
    "gptq_w4g32_sym": ("auto_gptq", 4, 32, True, 32, 64, False),
    "gptq_w4g32_zero0": ("auto_gptq", 4, 32, False, 32, 64, True),  # v1 cannot store zero 0
    "gptq_w3g32_zero0": ("auto_gptq", 3, 32, False, 32, 64, True),
    "awq_w4g32": ("auto_awq", 4, 32, False, 64, 128, False),
    "awq_w4g64_sym": ("auto_awq", 4, 64, True, 32, 128, False),
}


def inputs(bits, group_size, sym, out, inp, zero_point_zero, gptq_v1):
    maxq = 2**bits - 1
    groups = math.ceil(inp / group_size)
    o = np.arange(out)[:, None]
    i = np.arange(inp)[None, :]
    g = np.arange(groups)[None, :]
    codes = ((o * 7 + i * 3 + o * i) % (maxq + 1)).astype(np.uint8)
    scale = ((1 + (o * 3 + g) % 17) / 256).astype(np.float16)
    if sym:
        zero = np.full((out, groups), 2 ** (bits - 1), dtype=np.int32)
    elif gptq_v1 and not zero_point_zero:
        zero = ((o * 5 + g * 3) % maxq + 1).astype(np.int32)  # 1 .. maxq: representable in v1
    else:
        zero = ((o * 5 + g * 3) % (maxq + 1)).astype(np.int32)
    if zero_point_zero:
        zero[3, 1] = 0
        zero[10, 0] = 0
    return codes, scale, zero


def weight_of(codes, scale, zero, group_size):
    rep = lambda t: np.repeat(t.astype(np.float32), group_size, axis=1)[:, : codes.shape[1]]
    return torch.from_numpy(rep(scale) * (codes.astype(np.float32) - rep(zero)))


def main(path):
    tensors, metadata = {}, {}
    for name, (fmt, bits, gs, sym, out, inp, z0) in CASES.items():
        codes, scale, zero = inputs(bits, gs, sym, out, inp, z0, fmt == "auto_gptq")
        linear = torch.nn.Linear(inp, out, bias=False)
        linear.weight.data = weight_of(codes, scale, zero, gs)
        scale_t = torch.from_numpy(scale.astype(np.float32))
        zero_t = torch.from_numpy(zero)
        if fmt == "auto_round":
            layer = AutoRoundLinear(bits, gs, inp, out, False)
            layer.device = torch.device("cpu")  # as the exporter sets it
            layer.pack(linear, scale_t, int(zero[0, 0]) if sym else zero_t, None)
        elif fmt == "auto_gptq":
            layer = GptqV1Linear(bits, gs, inp, out, False, g_idx=True)
            layer.device = torch.device("cpu")
            layer.pack(linear, scale_t, int(zero[0, 0]) if sym else zero_t, None)
            tensors[name + ".g_idx"] = layer.g_idx.numpy()
        else:
            layer = WQLinear_GEMM.from_linear(linear, bits, gs, scales=scale_t.t().contiguous(),
                                              zeros=int(zero[0, 0]) if sym else zero_t.t().contiguous())
        tensors[name + ".codes"] = codes
        tensors[name + ".scale"] = scale
        tensors[name + ".zero"] = zero
        tensors[name + ".qweight"] = layer.qweight.numpy()
        tensors[name + ".qzeros"] = layer.qzeros.numpy()
        tensors[name + ".scales"] = layer.scales.numpy()
        metadata[name] = f"{fmt} {bits} {gs} {'sym' if sym else 'asym'}"
    save_file(tensors, path, metadata=metadata)


if __name__ == "__main__":
    main(sys.argv[1])
