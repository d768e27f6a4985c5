#!/usr/bin/env python3
"""Write tests/fixtures/reference_kquants.safetensors with AutoRound's own k-quant code
(pip install auto-round==0.16.1 torch==2.12.1 safetensors numpy; torch's CPU path is enough).
  tuning   -> auto_round/data_type/gguf.py quant_tensor_asym_dq ("int_asym_dq": Q2_K, Q4_K, Q5_K)
              and quant_tensor_sym_dq ("int_sym_dq": Q3_K, Q6_K), the double-quantized fake
              quantization AutoRound tunes through for gguf:q*_k schemes, differentiated by autograd;
  packing  -> auto_round/export/export_to_gguf/packing.py ggml_quant(..., scale=, wmin=, d_scale=,
              d_wmin=), the exporter's path for tuned layers (the layer's weight is the qdq value).
For each case the fixture holds the inputs (CASE.weight [rows, cols], CASE.v [groups, group],
CASE.min_scale / CASE.max_scale [groups], CASE.grad_out [rows, cols]) and the reference's
outputs: CASE.qdq, CASE.scale, CASE.d_scale, (asym) CASE.wmin, CASE.d_wmin, the gradients of
sum(qdq * grad_out) w.r.t. v, min_scale and max_scale, and CASE.packed (the ggml blocks, u8).
Metadata maps CASE to "ggml_type bits group_size sym|asym super_group_size super_bits".
The weights are random (exact-formula test) with edge cases planted: a group of zeros, a group
of positive weights only, a super-group whose weights are all >= 0 (all mins 0), and clipping
scales of exactly 0 and 1.
usage: make_kquant_fixtures.py OUT.safetensors
"""
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

from auto_round.data_type.gguf import quant_tensor_asym_dq, quant_tensor_sym_dq
from auto_round.export.export_to_gguf.packing import ggml_quant

# name: (ggml type, bits, group_size, sym, super_group_size, super_bits)
CASES = {
    "q2_k": ("q2_k", 2, 16, False, 16, 4),
    "q3_k": ("q3_k", 3, 16, True, 16, 6),
    "q4_k": ("q4_k", 4, 32, False, 8, 6),
    "q5_k": ("q5_k", 5, 32, False, 8, 6),
    "q6_k": ("q6_k", 6, 16, True, 16, 8),
}
ROWS, COLS = 6, 512


def inputs(seed, group_size):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((ROWS, COLS)) * 0.02).astype(np.float32)
    w[1, 5] = 0.2  # an outlier: one group's scale dominates its super-group
    w[2, :group_size] = 0.0  # a group of zeros: range 0, scale clamped
    w[3, group_size : 2 * group_size] = np.abs(w[3, group_size : 2 * group_size])  # min 0
    w[4, 256:512] = np.abs(w[4, 256:512])  # a whole super-group with mins 0
    groups = ROWS * COLS // group_size
    v = rng.uniform(-0.5, 0.5, (groups, group_size)).astype(np.float32)
    min_scale = rng.uniform(0.6, 1.0, groups).astype(np.float32)
    max_scale = rng.uniform(0.6, 1.0, groups).astype(np.float32)
    min_scale[:3] = 1.0
    max_scale[3:5] = 1.0
    min_scale[7] = 0.0
    grad_out = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    return w, v, min_scale, max_scale, grad_out


def main(path):
    tensors, metadata = {}, {}
    for seed, (name, (gtype, bits, gs, sym, sgs, sbits)) in enumerate(CASES.items()):
        w, v, mn, mx, g = inputs(seed, gs)
        v_t = torch.tensor(v, requires_grad=True)
        mn_t = torch.tensor(mn, requires_grad=True)
        mx_t = torch.tensor(mx, requires_grad=True)
        fn = quant_tensor_sym_dq if sym else quant_tensor_asym_dq
        qdq, scale, zp = fn(torch.tensor(w), bits=bits, group_size=gs, v=v_t, min_scale=mn_t, max_scale=mx_t,
                            scale_dtype=torch.float16, super_group_size=sgs, super_bits=sbits)
        (qdq * torch.tensor(g)).sum().backward()
        kw = {"scale": scale["scale"].detach(), "d_scale": scale["d_scale"].detach()}
        if not sym:
            kw["wmin"] = zp["wmin"].detach()
            kw["d_wmin"] = zp["d_wmin"].detach()
        packed = ggml_quant(qdq.detach().clone(), gtype, device="cpu", **kw)
        tensors.update({
            f"{name}.weight": w, f"{name}.v": v, f"{name}.min_scale": mn, f"{name}.max_scale": mx,
            f"{name}.grad_out": g, f"{name}.qdq": qdq.detach().numpy(),
            f"{name}.grad_v": v_t.grad.numpy(), f"{name}.grad_min_scale": mn_t.grad.numpy(),
            f"{name}.grad_max_scale": mx_t.grad.numpy(),
            f"{name}.packed": np.ascontiguousarray(packed).view(np.uint8).reshape(-1),
        })
        for k, t in kw.items():
            tensors[f"{name}.{k}"] = t.to(torch.float32).reshape(-1).numpy()
        metadata[name] = f"{gtype} {bits} {gs} {'sym' if sym else 'asym'} {sgs} {sbits}"
    save_file(tensors, path, metadata=metadata)


if __name__ == "__main__":
    main(sys.argv[1])
