#!/usr/bin/env python3
"""Load checkpoints we wrote with transformers itself (AutoModelForCausalLM.from_pretrained; for
an auto_round / GPTQ / AWQ checkpoint transformers hands the quantized layers to the installed
auto-round package's loader, as a user's script would) and print each one's perplexity on a token
file: non-overlapping windows, no BOS, exp(mean NLL) of the next-token predictions in each window
(what `autoround eval --context C --windows N` computes), float32 on the CPU. With --expect, the
perplexity each `autoround eval` printed for the same directory (ours) is compared: exit 1 when
any differs by more than --tolerance (relative). With --weight-only, auto-round's MXFP4/MXFP8/NVFP4
layers skip their dynamic activation quantization (pre_dequantized_input), so a W4A4 checkpoint
is scored as its weights alone (what `autoround --eval` scores without --act-quant).
Test-time tool: needs torch, transformers (5.x) and, for quantized checkpoints, auto-round 0.16.1.
usage: check_transformers_load.py TOKENS CONTEXT WINDOWS DIR[=OUR_PERPLEXITY] ... [--tolerance 0.01] [--weight-only]
"""
import math
import sys

import torch
from transformers import AutoModelForCausalLM


def perplexity(directory, ids, context, windows, weight_only=False):
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, device_map="cpu").eval()
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
        theirs, cls = perplexity(directory, ids, context, windows, weight_only)
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
