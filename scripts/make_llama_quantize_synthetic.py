"""Part of scripts/make_llama_quantize_fixture.sh: llama-quantize's tensor types on synthetic
LLaMA-shaped GGUF files whose rows hold whole k-quant blocks (hidden 256), which the asset model
(hidden 576: only ffn_down holds k-quants) cannot show: 32 layers with 4 query heads per KV head
(Llama-3-8B's layer count and grouping: q2_k's attn_v rule, the _s/_m layer counts), and 80
layers with grouped-query attention (llama.cpp's 70B class). Random F16 weights (only the shapes
and hyperparameters matter). Writes tests/fixtures/llama_quantize_types_synthetic.json.
usage: python make_llama_quantize_synthetic.py LLAMA_QUANTIZE OUT_JSON WORK_DIR"""
import os
import sys

import numpy as np
from gguf import GGUFWriter

from llama_quantize_types import MADE_BY, TYPES, quantized_types, save, write_out

quantize, out, work = sys.argv[1:]
CONFIGS = {
    "llama3_like_32_layers": dict(layers=32, hidden=256, intermediate=512, heads=8, kv_heads=2, vocab=512),
    "70b_like_80_layers": dict(layers=80, hidden=256, intermediate=512, heads=8, kv_heads=1, vocab=512),
}
rng = np.random.default_rng(0)


def write_model(path, c):
    w = GGUFWriter(path, "llama")
    w.add_name("synthetic")
    w.add_block_count(c["layers"])
    w.add_context_length(2048)
    w.add_embedding_length(c["hidden"])
    w.add_feed_forward_length(c["intermediate"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(c["hidden"] // c["heads"])
    w.add_vocab_size(c["vocab"])
    w.add_file_type(1)
    hd = c["hidden"] // c["heads"]
    mat = lambda rows, cols: rng.standard_normal((rows, cols)).astype(np.float16)
    w.add_tensor("token_embd.weight", mat(c["vocab"], c["hidden"]))
    w.add_tensor("output_norm.weight", np.ones(c["hidden"], np.float32))
    w.add_tensor("output.weight", mat(c["vocab"], c["hidden"]))
    for b in range(c["layers"]):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", np.ones(c["hidden"], np.float32))
        w.add_tensor(p + "attn_q.weight", mat(c["heads"] * hd, c["hidden"]))
        w.add_tensor(p + "attn_k.weight", mat(c["kv_heads"] * hd, c["hidden"]))
        w.add_tensor(p + "attn_v.weight", mat(c["kv_heads"] * hd, c["hidden"]))
        w.add_tensor(p + "attn_output.weight", mat(c["hidden"], c["heads"] * hd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(c["hidden"], np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(c["intermediate"], c["hidden"]))
        w.add_tensor(p + "ffn_up.weight", mat(c["intermediate"], c["hidden"]))
        w.add_tensor(p + "ffn_down.weight", mat(c["hidden"], c["intermediate"]))
    write_out(w)


fixture = {"made_by": MADE_BY + "synthetic GGUF files (scripts/make_llama_quantize_synthetic.py)", "models": {}}
for name, c in CONFIGS.items():
    source = os.path.join(work, name + ".gguf")
    write_model(source, c)
    fixture["models"][name] = {"config": c, "types": {
        t: quantized_types(quantize, source, os.path.join(work, f"{name}-{t}.gguf"), t.upper(), widths=False) for t in TYPES}}
save(fixture, out)
