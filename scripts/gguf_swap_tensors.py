#!/usr/bin/env python3
"""Copy GGUF file BASE to OUT with the tensors whose names match PATTERN taken from DONOR.

Test-time diagnostic (docs/accuracy.md, "Where the q2_k gap lives"): which layers of a tuned
file cost perplexity out of domain, found by swapping them for llama.cpp's own blocks. Both files
must hold the same tensors with the same block types and byte sizes (two quantizations of one
model at one llama.cpp file type); only tensor data is replaced, so OUT keeps BASE's metadata and
layout, byte for byte elsewhere.

usage: gguf_swap_tensors.py BASE.gguf DONOR.gguf PATTERN OUT.gguf   (PATTERN: a Python regex)
"""
import os
import re
import shutil
import sys

import gguf


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    base, donor, pattern, out = sys.argv[1:]
    a, b = gguf.GGUFReader(base), gguf.GGUFReader(donor)
    donor_tensors = {t.name: t for t in b.tensors}
    tmp = out + ".part"
    shutil.copyfile(base, tmp)
    swapped = 0
    with open(tmp, "r+b") as f, open(donor, "rb") as d:
        for t in a.tensors:
            if not re.search(pattern, t.name):
                continue
            u = donor_tensors.get(t.name)
            if u is None or u.tensor_type != t.tensor_type or u.n_bytes != t.n_bytes:
                sys.exit(f"{donor}: tensor {t.name} is missing or differs in type/size from {base}")
            d.seek(u.data_offset)
            f.seek(t.data_offset)
            f.write(d.read(u.n_bytes))
            swapped += 1
    if swapped == 0:
        os.remove(tmp)
        sys.exit(f"no tensor of {base} matches {pattern!r}")
    os.replace(tmp, out)
    print(f"{out}: {swapped} tensors from {donor}")


if __name__ == "__main__":
    main()
