#!/usr/bin/env python3
"""The parity harness's one evaluator (scripts/parity-harness.sh), neither tool being compared:
Hugging Face transformers' LlamaForCausalLM (float32) reads the asset GGUF; for each checkpoint
in the auto_round format (written by the reference or by us), every linear layer it holds is
unpacked here, with numpy, from its int32 words (GPTQ-style, qweight [in*bits/32, out], qzeros
[groups, out*bits/32]: a contiguous little-endian bit stream, which also covers 3 bits; or, where
the reference chose packing_format auto_round:auto_awq (4 bits), AutoAWQ's layout along the
output dimension with its nibble order; GPTQ v1's zero - 1 where packing_format is
auto_round:auto_gptq (sym layers); scales fp16 [groups, out]; w = scale * (q - zero)) and
replaces the float weight. Embeddings, norms and
the LM head stay the float model's for every checkpoint. Perplexity: every non-overlapping
512-token window of each token file, no BOS, exp(mean NLL) of the 511 next-token predictions
per window.
usage: parity_eval.py ASSETS_DIR TOKENS[,TOKENS...] NAME=DIR|float ...   (prints one line per NAME)
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

MODEL = "smollm2-135m-instruct-q4_1.gguf"
WINDOW = 512


def unpack(words, bits, count):
    """[rows, words] int32 holding a contiguous little-endian bit stream per row -> [rows, count]."""
    b = np.ascontiguousarray(words.astype("<u4")).view(np.uint8)
    bits_le = np.unpackbits(b, axis=1, bitorder="little")[:, :count * bits].reshape(words.shape[0], count, bits)
    return (bits_le.astype(np.int64) << np.arange(bits)).sum(axis=2)


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ: nibble i of a word holds column 8 * word + AWQ_ORDER[i]


def unpack_awq(words):
    """[rows, words] int32, 4-bit AWQ order along the columns -> [rows, 8 * words]."""
    w = words.astype(np.int64) & 0xFFFFFFFF
    out = np.zeros((w.shape[0], w.shape[1] * 8), dtype=np.int64)
    for i, column in enumerate(AWQ_ORDER):
        out[:, column::8] = (w >> (4 * i)) & 0xF
    return out


def load_checkpoint(directory):
    directory = Path(directory)
    if not (directory / "config.json").exists():  # the reference saves into a sub-folder named after the model
        directory = next(p.parent for p in directory.glob("*/config.json"))
    cfg = json.loads((directory / "config.json").read_text())["quantization_config"]
    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):  # torch's loader: a checkpoint may hold bf16 tensors
        tensors.update({k: v for k, v in load_file(str(f)).items() if k.endswith((".qweight", ".qzeros", ".scales"))})
    tensors = {k: v.numpy() for k, v in tensors.items()}
    weights = {}
    for name in [k[:-len(".qweight")] for k in tensors if k.endswith(".qweight")]:
        qweight, qzeros, scales = tensors[name + ".qweight"], tensors[name + ".qzeros"], tensors[name + ".scales"]
        extra = cfg.get("extra_config", {}).get(name, {})
        bits = int(extra.get("bits", cfg["bits"]))
        groups, out = scales.shape
        if cfg.get("packing_format", "auto_round").endswith("auto_awq"):  # the reference's choice at 4 bits
            if bits != 4:
                sys.exit(f"{directory}: {name}: AWQ packing of {bits} bits is not handled")
            q = unpack_awq(qweight).T                    # qweight [in, out / 8] -> [out, in]
            z = unpack_awq(qzeros)                       # [groups, out]
            cols = q.shape[1]
        else:  # GPTQ-style: qweight [in * bits / 32, out], qzeros [groups, out * bits / 32]
            cols = qweight.shape[0] * 32 // bits
            q = unpack(qweight.T, bits, cols)            # [out, in]
            z = unpack(qzeros, bits, out)                # [groups, out]
            if cfg.get("packing_format", "").endswith("auto_gptq"):  # GPTQ v1 (sym layers): zero - 1 stored
                z = z + 1
        # input column i is in group i // group_size; the last group may be shorter (576 columns in
        # groups of 128: 4 whole groups and one of 64)
        group = int(extra.get("group_size", cfg["group_size"]))
        if group <= 0:
            group = cols
        g = np.arange(cols) // group
        if g[-1] + 1 != groups:
            sys.exit(f"{directory}: {name}: {groups} groups of scales for {cols} columns in groups of {group}")
        s = scales.astype(np.float32)
        w = (q - z.T[:, g]) * s.T[:, g]
        weights[name] = torch.from_numpy(w.astype(np.float32))
    return weights


def perplexity(model, tokens, device):
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(tokens) - WINDOW + 1, WINDOW):
            ids = torch.tensor([tokens[start:start + WINDOW]], device=device)
            logits = model(ids).logits[0, :-1].double()
            nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += WINDOW - 1
    return float(np.exp(nll / count))


def main():
    assets, token_files, entries = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(assets), gguf_file=MODEL, dtype=torch.float32).to(device).eval()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts = [[int(t) for t in Path(f).read_text().split()] for f in token_files]
    for entry in entries:
        name, directory = entry.split("=", 1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(original[n])
            if directory != "float":
                replaced = load_checkpoint(directory)
                params = dict(model.named_parameters())
                for layer, w in replaced.items():
                    params[layer + ".weight"].copy_(w.to(device))
                if len(replaced) == 0:
                    sys.exit(f"{directory}: no quantized layer found")
        ppls = [perplexity(model, t, device) for t in texts]
        print(name + " " + " ".join(f"{x:.4f}" for x in ppls), flush=True)


if __name__ == "__main__":
    main()
