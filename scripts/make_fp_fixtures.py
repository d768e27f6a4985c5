#!/usr/bin/env python3
"""Writes tests/fixtures/float_quantizer.json: auto-round 0.16.1's own floating-point weight
quantization (MXFP4, MXFP8, NVFP4, FP8 per channel) of one deterministic weight, through the
package's WrapperLinear._qdq_weight (the function its tuning calls), with nonzero rounding offsets
v and max_scale != 1: the dequantized weight, the scales, and autograd's dL/dv and dL/dmax_scale of
sum(out * R); and the activation quantizers the presets pair with them (quant_mx with v = 0,
nv_fp4_with_static_gs with a calibrated maximum) on one activation matrix.
tests/test_float_quantizer.cpp checks FloatQuantizer and ActivationQuant against it.

usage: python scripts/make_fp_fixtures.py [OUT.json]
needs: torch, auto-round==0.16.1 (the CPU wheels are enough; e.g. a venv with
       `pip install torch transformers==5.17.0 auto-round==0.16.1`).
"""
import json
import sys
import warnings

import torch

warnings.filterwarnings("ignore")
from auto_round.data_type.fp8 import quant_fp8_sym  # noqa: E402
from auto_round.data_type.mxfp import quant_mx, quant_mx_rceil  # noqa: E402
from auto_round.data_type.nvfp import nv_fp4_with_static_gs  # noqa: E402
from auto_round.wrapper import WrapperLinear  # noqa: E402

ROWS, COLS = 8, 64


def weight():
    k = torch.arange(ROWS * COLS, dtype=torch.float64)
    w = (0.05 * torch.sin(0.7 * k) + 0.01 * torch.cos(0.13 * k)).reshape(ROWS, COLS)
    w *= torch.tensor([1.0, 0.1, 3.0, 0.01, 1.0, 20.0, 0.5, 1e-3], dtype=torch.float64)[:, None]  # magnitudes
    w = w.float()
    w[0, 3] = 0.41                   # outliers that set their group's scale
    w[1, 37] = -0.93
    w[2, 10] = 0.2
    w[3, 50] = 1.7
    w[3, 5] = 0.0
    w[4, :16] = torch.tensor([6, 5, 3.5, 2.5, 1.75, 1.25, 0.75, 0.25, -6, -5, -3.5, -2.5, -1.75, -1.25, -0.75, -0.25]) * 0.125
    w[6, 40] = -2.0
    return w


def case(title, W, R, **attrs):
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    lin.weight.data.copy_(W)
    lin.weight.requires_grad_(False)
    cfg = dict(bits=16, group_size=128, sym=True, data_type="int", act_bits=16, act_group_size=None, act_sym=True,
               act_data_type="float", act_dynamic=True, scale_dtype=torch.float16)
    cfg.update(attrs)
    for key, val in cfg.items():
        setattr(lin, key, val)
    wr = WrapperLinear(lin, enable_minmax_tuning=True, enable_torch_compile=False, device="cpu")
    n = wr.value.numel()
    v = (0.45 * torch.sin(torch.arange(n, dtype=torch.float64) * 1.3)).float().reshape(wr.value.shape)
    v.view(-1)[0:4] = 0.0  # some elements at plain round-to-nearest
    wr.value.data.copy_(v)
    groups = wr.max_scale.numel()
    ms = (0.8 + 0.15 * torch.cos(torch.arange(groups, dtype=torch.float64))).float()
    ms[::5] = 1.0
    wr.max_scale.data.copy_(ms.reshape(wr.max_scale.shape))
    out, scale, _ = wr._qdq_weight(wr.value, wr.min_scale, wr.max_scale)
    (out * R).sum().backward()
    entry = {
        "title": title,
        "bits": attrs["bits"], "group_size": attrs["group_size"], "data_type": attrs["data_type"],
        "v": wr.value.detach().reshape(-1).tolist(),
        "max_scale": wr.max_scale.detach().reshape(-1).tolist(),
        "out": out.detach().reshape(-1).tolist(),
        "scale": scale.detach().float().reshape(-1).tolist(),
        "grad_v": wr.value.grad.reshape(-1).tolist(),
        "grad_max_scale": wr.max_scale.grad.reshape(-1).tolist(),
        "min_scale_grad_is_none": wr.min_scale.grad is None,
    }
    gs = getattr(wr, "weight_global_scale", None)
    if gs is not None:
        entry["global_scale"] = float(gs)
    return entry


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/float_quantizer.json"
    W = weight()
    k = torch.arange(ROWS * COLS, dtype=torch.float64)
    R = torch.cos(0.37 * k + 0.1).float().reshape(ROWS, COLS)  # dL/dout
    fixture = {
        "made_by": "scripts/make_fp_fixtures.py with auto-round 0.16.1, torch " + torch.__version__,
        "rows": ROWS, "cols": COLS,
        "weight": W.reshape(-1).tolist(),
        "grad_out": R.reshape(-1).tolist(),
        "cases": [
            case("MXFP4", W, R, bits=4, group_size=32, data_type="mx_fp"),
            case("MXFP8", W, R, bits=8, group_size=32, data_type="mx_fp"),
            case("NVFP4", W, R, bits=4, group_size=16, data_type="nv_fp"),
            case("FP8 per channel", W, R, bits=8, group_size=-1, data_type="fp"),
        ],
    }
    # activations: rows are tokens, groups run along the features
    x = (torch.sin(0.31 * k.reshape(ROWS, COLS)) * torch.exp(0.02 * (k.reshape(ROWS, COLS) % 37)) * 2.5).float()
    x[2, 17] = 40.0
    x[1] *= 1.5  # group maxima in (6, 8): the floor rule saturates them, the rceil rule takes the next scale
    x[3] *= 0.37
    x[5] *= 1.6  # maxima near 7.9: MXFP8 saturates them at 7 under the floor rule
    act_max = float(x.abs().max()) * 1.25  # a calibrated maximum above this input's
    fixture["activations"] = {
        "x": x.reshape(-1).tolist(),
        "mxfp4": quant_mx(x.clone(), bits=4, group_size=32)[0].reshape(-1).tolist(),
        "mxfp8": quant_mx(x.clone(), bits=8, group_size=32)[0].reshape(-1).tolist(),
        # MXFP4_RCEIL / MXFP8_RCEIL activations (act_data_type mx_fp_rceil)
        "mxfp4_rceil": quant_mx_rceil(x.clone(), bits=4, group_size=32)[0].reshape(-1).tolist(),
        "mxfp8_rceil": quant_mx_rceil(x.clone(), bits=8, group_size=32)[0].reshape(-1).tolist(),
        "nvfp4_act_max": act_max,
        "nvfp4": nv_fp4_with_static_gs(x.clone(), bits=4, group_size=16, tensor_max=torch.tensor(act_max))[0].reshape(-1).tolist(),
    }
    # autograd's backward through the activation quantizers (the gradient the tuned block's
    # backward passes to the layers before a quantized input): dL/dx of sum(q(x) * Rx), and for
    # FP8_STATIC also dL/d act_max_scale (a tuned parameter of the static schemes, here 0.9)
    Rx = torch.cos(0.53 * k + 0.2).float().reshape(ROWS, COLS)
    fixture["activations"]["grad_out"] = Rx.reshape(-1).tolist()

    def grad_x(fn):
        xg = x.clone().requires_grad_(True)
        (fn(xg) * Rx).sum().backward()
        return xg.grad.reshape(-1).tolist()

    fixture["activations"]["grad_x"] = {
        "mxfp4": grad_x(lambda t: quant_mx(t, bits=4, group_size=32, max_scale=torch.tensor(1.0))[0]),
        "mxfp8": grad_x(lambda t: quant_mx(t, bits=8, group_size=32, max_scale=torch.tensor(1.0))[0]),
        "mxfp4_rceil": grad_x(lambda t: quant_mx_rceil(t, bits=4, group_size=32, max_scale=torch.tensor(1.0))[0]),
        "mxfp8_rceil": grad_x(lambda t: quant_mx_rceil(t, bits=8, group_size=32, max_scale=torch.tensor(1.0))[0]),
        "nvfp4": grad_x(lambda t: nv_fp4_with_static_gs(t, bits=4, group_size=16, tensor_max=torch.tensor(act_max))[0]),
    }
    ams = torch.tensor(0.9, requires_grad=True)
    xg = x.clone().requires_grad_(True)
    fp8_max = float(x.abs().max()) * 0.5  # a calibrated maximum below this input's: some elements clamp
    out = quant_fp8_sym(xg, max_scale=ams, tensor_max=torch.tensor(fp8_max))[0]
    (out * Rx).sum().backward()
    fixture["activations"]["fp8_static"] = {
        "tensor_max": fp8_max, "act_max_scale": 0.9, "out": out.detach().reshape(-1).tolist(),
        "grad_x": xg.grad.reshape(-1).tolist(), "grad_act_max_scale": float(ams.grad),
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f)
    print("wrote", out_path)


if __name__ == "__main__":
    main()
