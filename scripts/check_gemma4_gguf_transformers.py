#!/usr/bin/env python3
"""transformers' perplexity of the weights in a gemma4 GGUF file we wrote: the family fixture's
Hugging Face checkpoint (tests/fixtures/families/gemma4_text or gemma4_moe) with every linear
layer, expert tensor and the (tied) embedding replaced by that tensor of the GGUF file, dequantized
by gguf-py (llama.cpp's own Python reader), run by transformers 5.17 in float32 on the CPU. Our
`autoround eval --model FILE.gguf --context C` of the same file must print the same perplexity: an
independent check of our GGUF reading and forward where llama-perplexity cannot run (the fixtures'
stand-in vocabulary tokenizes no text). Windows: non-overlapping, no BOS, as `autoround eval`.
usage: check_gemma4_gguf_transformers.py FIXTURE_DIR FILE.gguf TOKENS CONTEXT WINDOWS GGUF_PY_DIR
       (needs torch, transformers, safetensors, numpy; GGUF_PY_DIR: the llama.cpp sdist's gguf-py)"""
import math
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

fixture, gguf_path, token_file, context, windows, gguf_py = sys.argv[1:7]
context, windows = int(context), int(windows)
sys.path.insert(0, gguf_py)
from gguf import GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

# llama.cpp's converter's names of Gemma 4's linear layers and experts (conversion/gemma.py)
NAMES = {"attn_q": "self_attn.q_proj.weight", "attn_k": "self_attn.k_proj.weight", "attn_v": "self_attn.v_proj.weight",
         "attn_output": "self_attn.o_proj.weight", "ffn_gate": "mlp.gate_proj.weight", "ffn_up": "mlp.up_proj.weight",
         "ffn_down": "mlp.down_proj.weight", "ffn_gate_up_exps": "experts.gate_up_proj", "ffn_down_exps": "experts.down_proj"}
state = {k: v.float() for k, v in load_file(fixture + "/model.safetensors").items()}
replaced = []
for t in GGUFReader(gguf_path).tensors:
    parts = t.name.split(".")
    if t.name == "token_embd.weight":
        key = "model.embed_tokens.weight"
    elif parts[0] == "blk" and parts[2] in NAMES and parts[-1] == "weight":
        key = f"model.layers.{parts[1]}.{NAMES[parts[2]]}"
    else:
        continue
    x = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
    if tuple(state[key].shape) != x.shape:
        sys.exit(f"{t.name}: shape {x.shape} against {key}'s {tuple(state[key].shape)}")
    state[key] = torch.from_numpy(x.copy())
    replaced.append(t.tensor_type.name)
model = AutoModelForCausalLM.from_pretrained(fixture, dtype=torch.float32).eval()
missing, unexpected = model.load_state_dict(state, strict=False)
assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)  # (tied to the embedding)
tokens = [int(x) for x in open(token_file).read().split()]
nll, count = 0.0, 0
for w in range(min(windows, len(tokens) // context)):
    ids = torch.tensor([tokens[w * context:(w + 1) * context]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    for i in range(context - 1):
        nll -= float(logp[i, ids[0, i + 1]])
        count += 1
types = {n: replaced.count(n) for n in sorted(set(replaced))}
print(f"{gguf_path}: {len(replaced)} tensors from the file {types}; transformers perplexity {math.exp(nll / count):.4f} over {count} tokens")
