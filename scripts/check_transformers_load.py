#!/usr/bin/env python3
"""Load checkpoints we wrote with transformers itself (AutoModelForCausalLM.from_pretrained; for
an auto_round / GPTQ / AWQ checkpoint transformers hands the quantized layers to the installed
auto-round package's loader, as a user's script would) and print each one's perplexity on a token
file: non-overlapping windows, no BOS, exp(mean NLL) of the next-token predictions in each window
(what `autoround eval --context C --windows N` computes), float32 on the CPU. With --expect, the
perplexity each `autoround eval` printed for the same directory (ours) is compared: exit 1 when
any differs by more than --tolerance (relative). With --weight-only, auto-round's MXFP4/MXFP8/NVFP4
layers skip their dynamic activation quantization (pre_dequantized_input), so a W4A4 checkpoint
is scored as its weights alone (what `autoround --eval` scores without --act-quant); a
compressed-tensors (llm_compressor) checkpoint is loaded from a copy whose config drops its
input_activations. --bf16 loads in bfloat16 (compressed-tensors decompresses MX/NV weights to
bfloat16 and cannot run a float32 model).
Test-time tool: needs torch, transformers (5.x) and, for quantized checkpoints, auto-round 0.16.1
(auto_round, GPTQ, AWQ) or compressed-tensors (llm_compressor).
usage: check_transformers_load.py TOKENS CONTEXT WINDOWS DIR[=OUR_PERPLEXITY] ... [--tolerance 0.01] [--weight-only] [--bf16]
"""
import json
import math
import os
import tempfile
import sys

import torch
from transformers import AutoModelForCausalLM


def without_input_activations(directory):
    """A compressed-tensors checkpoint's weight-only twin: a temporary copy (files linked) whose
    config has no input_activations; other checkpoints as they are."""
    config = json.load(open(os.path.join(directory, "config.json")))
    qc = config.get("quantization_config", {})
    if qc.get("quant_method") != "compressed-tensors":
        return directory
    copy = tempfile.mkdtemp(prefix="weight-only-")
    for name in os.listdir(directory):
        if name != "config.json":
            os.symlink(os.path.abspath(os.path.join(directory, name)), os.path.join(copy, name))
    for group in qc["config_groups"].values():
        group["input_activations"] = None
    json.dump(config, open(os.path.join(copy, "config.json"), "w"), indent=2)
    return copy


def perplexity(directory, ids, context, windows, weight_only=False, dtype=torch.float32):
    if weight_only:
        directory = without_input_activations(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, device_map="cpu").eval()
    if weight_only:
        for m in model.modules():
            if hasattr(m, "pre_dequantized_input"):
                m.pre_dequantized_input = True
    nll, count = 0.0, 0
    for w in range(windows):
        window = torch.tensor([ids[w * context:(w + 1) * context]])
        with torch.no_grad():
            logits = model(window).logits[0].double()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        nll -= float(logp.gather(1, window[0, 1:, None]).sum())
        count += context - 1
    return math.exp(nll / count), type(model).__name__


def main(argv):
    tolerance = 0.01
    weight_only = "--weight-only" in argv
    if weight_only:
        argv.remove("--weight-only")
    dtype = torch.float32
    if "--bf16" in argv:
        argv.remove("--bf16")
        dtype = torch.bfloat16
    if "--tolerance" in argv:
        i = argv.index("--tolerance")
        tolerance = float(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) < 4:
        sys.exit(__doc__)
    ids = [int(t) for t in open(argv[0]).read().split()]
    context, windows = int(argv[1]), int(argv[2])
    if windows * context > len(ids):
        sys.exit(f"{argv[0]}: {len(ids)} tokens do not fill {windows} windows of {context}")
    failed = False
    for spec in argv[3:]:
        directory, _, ours = spec.partition("=")
        theirs, cls = perplexity(directory, ids, context, windows, weight_only, dtype)
        line = f"{directory}: transformers ({cls}) perplexity {theirs:.4f}"
        if ours:
            ratio = float(ours) / theirs
            ok = abs(ratio - 1) <= tolerance
            failed |= not ok
            line += f"; ours {float(ours):.4f}; ours / transformers {ratio:.5f} {'ok' if ok else 'DIFFERS'}"
        print(line, flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
