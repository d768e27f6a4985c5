#!/usr/bin/env python3
"""Write tests/fixtures/smollm2_gguf_values.txt: reference values of a few tensors of the asset
model, dequantized by the `gguf` package (gguf-py, llama.cpp's own Python reader), so that our
GGUF reader and block dequantizers are checked against an independent implementation.

usage: make_gguf_fixture.py MODEL.gguf OUT.txt   (needs: pip install gguf==0.19.0 numpy)
Line format: name rows cols type sum_abs v[0] v[1] v[2] v[3] v[last]
"""
import sys

import gguf
import numpy as np
from gguf.quants import dequantize

NAMES = ["token_embd.weight", "blk.0.attn_q.weight", "blk.7.ffn_down.weight", "blk.0.attn_norm.weight",
         "output_norm.weight"]


def main():
    model, out = sys.argv[1:3]
    reader = gguf.GGUFReader(model)
    tensors = {t.name: t for t in reader.tensors}
    with open(out, "w") as f:
        f.write("# produced by scripts/make_gguf_fixture.py from smollm2-135m-instruct-q4_1.gguf "
                "(sha256 b179c952...) with the gguf package's dequantize\n")
        for name in NAMES:
            t = tensors[name]
            values = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
            cols = int(t.shape[0])
            rows = values.size // cols
            picks = [values[0], values[1], values[2], values[3], values[-1]]
            f.write(f"{name} {rows} {cols} {t.tensor_type.name} {np.abs(values).sum():.10e} " +
                    " ".join(f"{v:.9e}" for v in picks) + "\n")


if __name__ == "__main__":
    main()
