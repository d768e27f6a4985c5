#!/usr/bin/env python3
"""Hugging Face tokenizers' speed on the text bench_tokenizer encodes: the asset model's
tokenizer rebuilt as scripts/tokenize_gguf.py rebuilds it, one thread (RAYON_NUM_THREADS=1; one
encode call), the text file repeated to at least MB megabytes, best of three. Prints one table row.

usage: hf_tokenize_speed.py MODEL.gguf TEXT [MB=10]
"""
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenize_gguf import build_tokenizer  # noqa: E402


def main():
    model, text_path = sys.argv[1], sys.argv[2]
    megabytes = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    one = open(text_path, "rb").read().decode("utf-8")
    text = one
    while len(text.encode()) < megabytes * 1e6:
        text += one
    size = len(text.encode()) / 1e6
    best, tokens = 1e30, 0
    for _ in range(3):
        tok = build_tokenizer(model)  # a fresh cache each run
        start = time.perf_counter()
        tokens = len(tok.encode(text).ids)
        best = min(best, time.perf_counter() - start)
    import tokenizers
    print(f"| Hugging Face tokenizers {tokenizers.__version__} | {size:.1f} MB | {tokens} | {best:.2f} s | {size / best:.1f} MB/s |")


if __name__ == "__main__":
    main()
