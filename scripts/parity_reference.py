#!/usr/bin/env python3
"""Quantize the asset model with the reference, auto-round 0.16.1, as a user runs it, for the
parity harness (scripts/parity-harness.sh): the float model is the asset GGUF read by
transformers (float32, as transformers dequantizes it), the calibration set is NSAMPLES
consecutive windows of SEQLEN tokens of the calibration token file (the same windows our
`autoround quantize --calibration FILE.tokens` cuts, given to the reference as a list of
[1, seqlen] token tensors), everything else the reference's defaults (amp on CUDA, SignSGD,
lr 1/iters, best step, two activation streams). Writes the auto_round format to OUT and prints
the tuning wall time.
usage: parity_reference.py ASSETS_DIR OUT (--bits B --group-size G [--sym] | --scheme MXFP4|NVFP4|...
                                          | --auto-scheme AVG_BITS:W2A16,W3A16[:ignore_scale_zp_bits])
       [--iters 200] [--nsamples 96] [--seqlen 512] [--batch-size 8] [--seed 42] [--disable-opt-rtn] [--enable-alg-ext]
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = "smollm2-135m-instruct-q4_1.gguf"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("assets")
    p.add_argument("out")
    p.add_argument("--bits", type=int)
    p.add_argument("--group-size", type=int)
    p.add_argument("--scheme", help="the reference's preset (MXFP4, NVFP4, ...) instead of bits / group size / sym")
    p.add_argument("--auto-scheme", help="AVG_BITS:OPTION,OPTION[:ignore_scale_zp_bits]: the reference's AutoScheme (mixed precision)")
    p.add_argument("--disable-opt-rtn", action="store_true", help="iters 0: plain round-to-nearest, not its scale search")
    p.add_argument("--enable-alg-ext", action="store_true", help="the reference's SignRoundV2 extensions (enable_alg_ext=True)")
    p.add_argument("--sym", action="store_true")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--nsamples", type=int, default=96)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    assets = Path(a.assets)
    tokens = [int(t) for t in (assets / "kjv-calib.tokens").read_text().split()]
    if a.nsamples * a.seqlen > len(tokens):
        sys.exit(f"{a.nsamples} x {a.seqlen} needs more than the {len(tokens)} calibration tokens")
    windows = [torch.tensor([tokens[i * a.seqlen:(i + 1) * a.seqlen]]) for i in range(a.nsamples)]
    model = AutoModelForCausalLM.from_pretrained(str(assets), gguf_file=MODEL, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(assets), gguf_file=MODEL)

    from auto_round import AutoRound
    start = time.time()
    scheme = {"scheme": a.scheme} if a.scheme else {"bits": a.bits, "group_size": a.group_size, "sym": a.sym}
    if a.auto_scheme:  # its scoring data is the compressor's dataset: the same windows
        from auto_round import AutoScheme
        import auto_round.auto_scheme.delta_loss as delta_loss

        # AutoScheme accepts only a dataset's name (offline here): its loader gets the calibration
        # tokens cut into windows of the length it asks for, in order, as ours reads them.
        def calibration_windows(tokenizer, seqlen, dataset_name=None, seed=42, bs=1, nsamples=16):
            n = min(nsamples, len(tokens) // seqlen)
            rows = [tokens[i * seqlen:(i + 1) * seqlen] for i in range(n)]
            return [{"input_ids": torch.tensor(rows[i:i + bs])} for i in range(0, n, bs)]
        delta_loss.get_dataloader = calibration_windows
        import auto_round.auto_scheme.gen_auto_scheme as gen_auto_scheme
        check = gen_auto_scheme.GenScheme._check_configs

        def check_with_windows(self):  # it insists on a name; the windows go on to the loader above
            dataset, self.dataset = self.dataset, "kjv-calib"
            try:
                check(self)
            finally:
                self.dataset = dataset
        gen_auto_scheme.GenScheme._check_configs = check_with_windows
        fields = a.auto_scheme.split(":")
        scheme = {"scheme": AutoScheme(avg_bits=float(fields[0]), options=tuple(fields[1].split(",")),
                                       ignore_scale_zp_bits=len(fields) > 2 and fields[2] == "ignore_scale_zp_bits",
                                       # its default offloads blocks to disk and reloads them from the model
                                       # directory's safetensors; ours is a GGUF loaded into memory
                                       low_cpu_mem_usage=False)}
    extra = {"disable_opt_rtn": True} if a.disable_opt_rtn else {}
    if a.enable_alg_ext:
        extra["enable_alg_ext"] = True
    ar = AutoRound(model, tokenizer, **scheme, iters=a.iters, nsamples=a.nsamples, seqlen=a.seqlen, batch_size=a.batch_size,
                   dataset=windows, seed=a.seed, **extra)
    ar.quantize_and_save(a.out, format="auto_round")
    print(f"reference seconds: {time.time() - start:.1f}", flush=True)


if __name__ == "__main__":
    main()
