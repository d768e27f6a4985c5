#!/usr/bin/env python3
"""Check what examples/export_formats wrote, with the reference tools (test-time only):
  - every GGUF file is read by gguf-py's GGUFReader and every tensor, dequantized by
    gguf.quants.dequantize, has the sums our C++ dequantization recorded in checksums.json;
  - every Hugging Face checkpoint opens with the `safetensors` package (names, dtypes, shapes
    as config.json's quantization_config implies), and its tokenizer.json, loaded by the
    `tokenizers` library, encodes the evaluation text to the token ids of the asset step.
usage: check_exports.py OUT_DIR ASSETS_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def check_gguf(path, expected):
    reader = gguf.GGUFReader(path)
    names = set()
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        sums = [values.sum(), (values * values).sum(), (values * (np.arange(values.size) % 1009)).sum()]
        want = expected[t.name]
        for got, ours in zip(sums, want):
            if not np.isclose(got, ours, rtol=1e-9, atol=1e-6):
                sys.exit(f"{path}: tensor {t.name}: gguf-py gives {sums}, we gave {want}")
        names.add(t.name)
    if names != set(expected):
        sys.exit(f"{path}: tensor names differ from ours")
    print(f"{path.name}: {len(names)} tensors dequantize alike in gguf-py and autoround-cpp")


def check_checkpoint(directory, eval_text, eval_ids):
    config = json.loads((directory / "config.json").read_text())
    qc = config["quantization_config"]
    tensors = {}
    for shard in sorted(directory.glob("*.safetensors")):  # one file, or shards listed in the index
        tensors.update(load_file(shard))
    bits = qc["bits"]
    layer = "model.layers.0.mlp.down_proj"
    out_features, in_features = config["hidden_size"], config["intermediate_size"]
    qweight, scales = tensors[layer + ".qweight"], tensors[layer + ".scales"]
    if qc["quant_method"] == "awq":
        expect = (in_features, out_features * bits // 32)
    else:
        expect = (in_features * bits // 32, out_features)
    if qweight.dtype != np.int32 or qweight.shape != expect or scales.dtype != np.float16:
        sys.exit(f"{directory}: {layer}.qweight is {qweight.dtype} {qweight.shape}, expected int32 {expect}")
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    ids = tokenizer.encode(eval_text).ids
    if ids != eval_ids:
        sys.exit(f"{directory}/tokenizer.json: encodes the evaluation text differently from the asset step")
    print(f"{directory.name}: {len(tensors)} tensors ({qc['quant_method']}), tokenizer.json reproduces {len(ids)} token ids")


def main():
    out, assets = Path(sys.argv[1]), Path(sys.argv[2])
    sums = json.loads((out / "checksums.json").read_text())
    for name, expected in sums.items():
        check_gguf(out / name, expected)
    text = (assets / "kjv-eval.txt").read_text(encoding="utf-8")
    ids = [int(line) for line in (assets / "kjv-eval.tokens").read_text().split()]
    for fmt in ("auto_round", "auto_gptq", "auto_awq"):
        check_checkpoint(out / fmt, text, ids)


if __name__ == "__main__":
    main()
