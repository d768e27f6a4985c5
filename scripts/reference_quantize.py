#!/usr/bin/env python3
"""Quantize a Hugging Face checkpoint directory with the reference, auto-round 0.16.1, on the
same calibration windows autoround cuts from a token-id file (NSAMPLES consecutive windows of
SEQLEN tokens, given to the reference as a list of [1, seqlen] token tensors), everything else the
reference's defaults (amp on CUDA, SignSGD, lr 1/iters, best step, two activation streams,
low_cpu_mem_usage). The model is given as its directory, so the reference loads it as its own
CLI does (the checkpoint's dtype, on the CPU; one block at a time goes to the GPU). Writes the auto_round format to OUT and prints the wall time of
AutoRound(...) + quantize_and_save.

usage: reference_quantize.py MODEL_DIR TOKENS OUT [--bits 4] [--group-size 128] [--sym]
       [--iters 200] [--nsamples 128] [--seqlen 2048] [--batch-size 8] [--seed 42]
"""
import argparse
import sys
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("tokens")
    p.add_argument("out")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--sym", action="store_true")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    with open(a.tokens) as f:
        tokens = [int(t) for t in f.read().split()]
    if a.nsamples * a.seqlen > len(tokens):
        sys.exit(f"{a.nsamples} x {a.seqlen} needs more than the {len(tokens)} calibration tokens")
    windows = [torch.tensor([tokens[i * a.seqlen:(i + 1) * a.seqlen]]) for i in range(a.nsamples)]
    from auto_round import AutoRound
    start = time.time()
    ar = AutoRound(a.model, bits=a.bits, group_size=a.group_size, sym=a.sym, iters=a.iters, nsamples=a.nsamples,
                   seqlen=a.seqlen, batch_size=a.batch_size, dataset=windows, seed=a.seed)
    ar.quantize_and_save(a.out, format="auto_round")
    print(f"reference seconds: {time.time() - start:.1f}", flush=True)


if __name__ == "__main__":
    main()
