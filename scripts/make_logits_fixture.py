#!/usr/bin/env python3
"""Write tests/fixtures/smollm2_logits.safetensors: logits of the asset model computed by an
independent implementation, Hugging Face transformers (pip install transformers torch gguf;
transformers reads the GGUF itself: gguf-py dequantizes the Q4_1 tensors and transformers undoes
llama.cpp's q/k row permutation; its LlamaForCausalLM runs in float32 with eager attention).
Input: the first 64 token ids of the evaluation text. Stored per position: the log-sum-exp of
the logits, the arg-max id, and the logits of 64 ids (the reference's top 16 at that position
and 48 fixed ids spread over the vocabulary), so the fixture stays small.
usage: make_logits_fixture.py ASSETS_DIR OUT.safetensors
"""
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

MODEL = "smollm2-135m-instruct-q4_1.gguf"
POSITIONS = 64


def main(assets, out):
    assets = Path(assets)
    tokens = [int(t) for t in (assets / "kjv-eval.tokens").read_text().split()[:POSITIONS]]
    model = AutoModelForCausalLM.from_pretrained(str(assets), gguf_file=MODEL, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].double().numpy()  # [positions, vocab]
    vocab = logits.shape[1]
    fixed = np.linspace(0, vocab - 1, 48).astype(np.int64)
    ids = np.zeros((POSITIONS, 64), dtype=np.int32)
    values = np.zeros((POSITIONS, 64), dtype=np.float32)
    for p in range(POSITIONS):
        top = np.argsort(-logits[p])[:16]
        ids[p] = np.concatenate([top, fixed]).astype(np.int32)
        values[p] = logits[p, ids[p]].astype(np.float32)
    lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
    save_file({"tokens": np.array(tokens, dtype=np.int32), "ids": ids, "logits": values,
               "logsumexp": lse.astype(np.float64), "argmax": logits.argmax(axis=1).astype(np.int32)},
              out, metadata={"reference": "transformers LlamaForCausalLM, float32, eager attention",
                             "model": MODEL})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
