#!/usr/bin/env python3
"""Write tests/fixtures/reference_mxfp4.gguf with gguf-py (pip install gguf==0.19.0), llama.cpp's own
Python package: its numpy transcription of ggml's quantize_row_mxfp4_ref / dequantize_row_mxfp4
(gguf.quants.MXFP4). Tensors: "input" (F32 [6, 256]), "mxfp4" (its MXFP4 blocks by gguf-py) and
"mxfp4.dequantized" (gguf-py's reading of them, F32). The input holds the cases the rounding rule
shows in: exact ties between two E2M1 values (ggml takes the first index: the smaller magnitude),
an all-zero block, negative values rounding to zero, a block whose largest value is a power of two,
heavy-tailed noise and tiny / large exponents.
usage: make_mxfp4_fixture.py OUT.gguf
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def make_input():
    rng = np.random.default_rng(2024)
    x = (rng.standard_t(4, size=(6, 256)) * 0.02).astype(np.float32)
    x[0, :32] = 0.0                                                   # an all-zero block
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0], dtype=np.float32)
    x[1, 32:64] = np.concatenate([ties, -ties, ties * 0.5, -ties * 0.5])  # midpoints at scale 1 (max 6 -> e = 127)
    x[1, 64:96] = -0.01                                               # negatives that round to zero beside a large one
    x[1, 64] = 4.0                                                    # largest is a power of two
    x[2, 96:128] *= 1e-30                                             # tiny exponent
    x[3, 128:160] *= 1e30                                             # large exponent
    x[4, 200] = 12.0                                                  # a lone outlier
    return x


def main(path):
    x = make_input()
    q = gguf.quants.quantize(x, T.MXFP4)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tensor("input", x)
    w.add_tensor("mxfp4", q, raw_dtype=T.MXFP4)
    w.add_tensor("mxfp4.dequantized", gguf.quants.dequantize(q, T.MXFP4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1])
