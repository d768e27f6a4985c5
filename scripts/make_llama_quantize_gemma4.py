"""llama-quantize's tensor types on a synthetic gemma4 GGUF file (random F16 weights: only shapes and
hyperparameters matter), for tests/test_gguf_moe_export.cpp: Gemma 4's dense layout as llama.cpp's
converter writes it, 12 layers (5 sliding, then a full one, twice), the sliding layers' heads 64
wide with 2 KV heads, the full layers' 128 wide with 1 KV head and no attn_v (attention_k_eq_v): 10
attn_v tensors for 12 layers, which llama-quantize counts as it visits them (its use_more_bits and
"first layers" rules for attn_v go by that count, not by the layer number). Writes
tests/fixtures/llama_quantize_types_gemma4.json: the config and, per file type, every 2-D tensor's
[type name, ne[0]] as llama-quantize wrote it.
With E2B as the last argument, Gemma 4 E2B's pieces on the same 12 layers instead
(tests/fixtures/llama_quantize_types_gemma4_e2b.json): every layer with its own attn_v (no
attention_k_eq_v), per-layer embeddings of 256 (per_layer_token_embd [vocab, 12 · 256],
per_layer_model_proj, per_layer_proj_norm; per layer inp_gate, proj, post_norm), the last 6 layers
sharing the keys and values of layers 4 (sliding) and 5 (full), so without attn_k / attn_v (6
attn_v tensors), their MLPs twice as wide (feed_forward_length one width per layer).
usage: python make_llama_quantize_gemma4.py LLAMA_QUANTIZE OUT_JSON WORK_DIR [E2B]
       (python: one with gguf-py and numpy, e.g. ~/.cache/autoround-cpp/pyenv/bin/python;
        LLAMA_QUANTIZE: scripts/build-llama-cpp.sh's build/bin/llama-quantize)"""
import os
import sys

import numpy as np
from gguf import GGUFWriter

from llama_quantize_types import MADE_BY, TYPES, quantized_types, save, write_out

quantize, out, work = sys.argv[1:4]
e2b = sys.argv[4:] == ["E2B"]
C = dict(arch="gemma4", layers=12, hidden=256, heads=4, kv_heads=2, head_dim=64, full_kv_heads=1, full_head_dim=128,
         ff=512, vocab=512, window=128)
if e2b:
    C.update(full_kv_heads=2, per_layer=256, shared_kv=6, double_wide=True)
shared = [e2b and b >= C["layers"] - C.get("shared_kv", 0) for b in range(C["layers"])]
rng = np.random.default_rng(0)
full = [b % 6 == 5 for b in range(C["layers"])]


def write_model(path):
    H, n = C["hidden"], C["heads"]
    w = GGUFWriter(path, "gemma4")
    w.add_name("synthetic")
    w.add_block_count(C["layers"])
    w.add_context_length(2048)
    w.add_embedding_length(H)
    if e2b:  # one width per layer: the kv-shared ones double
        w.add_array("gemma4.feed_forward_length", [2 * C["ff"] if s else C["ff"] for s in shared])
    else:
        w.add_feed_forward_length(C["ff"])
    w.add_head_count(n)
    w.add_head_count_kv([C["full_kv_heads"] if f else C["kv_heads"] for f in full])
    w.add_key_length(C["full_head_dim"])
    w.add_value_length(C["full_head_dim"])
    w.add_key_length_swa(C["head_dim"])
    w.add_value_length_swa(C["head_dim"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(C["window"])
    w.add_sliding_window_pattern([not f for f in full])
    w.add_uint32("gemma4.embedding_length_per_layer_input", C.get("per_layer", 0))
    w.add_uint32("gemma4.attention.shared_kv_layers", C.get("shared_kv", 0))
    w.add_rope_freq_base(1e6)
    w.add_rope_freq_base_swa(1e4)
    w.add_rope_dimension_count(C["full_head_dim"])
    w.add_uint32("gemma4.rope.dimension_count_swa", C["head_dim"])
    w.add_final_logit_softcapping(30.0)
    w.add_vocab_size(C["vocab"])
    w.add_file_type(1)
    mat = lambda *shape: rng.standard_normal(shape).astype(np.float16)
    ones = lambda k: np.ones(k, np.float32)
    w.add_tensor("token_embd.weight", mat(C["vocab"], H))  # tied: no output.weight
    w.add_tensor("output_norm.weight", ones(H))
    if e2b:
        P, L = C["per_layer"], C["layers"]
        w.add_tensor("per_layer_token_embd.weight", mat(C["vocab"], L * P))
        w.add_tensor("per_layer_model_proj.weight", mat(L * P, H))
        w.add_tensor("per_layer_proj_norm.weight", ones(P))
    d_full = C["full_head_dim"]
    w.add_tensor("rope_freqs.weight", np.array([1.0] * (d_full // 8) + [1e30] * (d_full // 2 - d_full // 8), np.float32))
    for b in range(C["layers"]):
        p = f"blk.{b}."
        d, kv = (C["full_head_dim"], C["full_kv_heads"]) if full[b] else (C["head_dim"], C["kv_heads"])
        w.add_tensor(p + "attn_norm.weight", ones(H))
        ff = 2 * C["ff"] if shared[b] else C["ff"]
        w.add_tensor(p + "attn_q.weight", mat(n * d, H))
        if not shared[b]:
            w.add_tensor(p + "attn_k.weight", mat(kv * d, H))
        if not (full[b] and not e2b) and not shared[b]:
            w.add_tensor(p + "attn_v.weight", mat(kv * d, H))
        w.add_tensor(p + "attn_output.weight", mat(H, n * d))
        w.add_tensor(p + "attn_q_norm.weight", ones(d))
        if not shared[b]:
            w.add_tensor(p + "attn_k_norm.weight", ones(d))
        w.add_tensor(p + "post_attention_norm.weight", ones(H))
        w.add_tensor(p + "ffn_norm.weight", ones(H))
        w.add_tensor(p + "ffn_gate.weight", mat(ff, H))
        w.add_tensor(p + "ffn_up.weight", mat(ff, H))
        w.add_tensor(p + "ffn_down.weight", mat(H, ff))
        w.add_tensor(p + "post_ffw_norm.weight", ones(H))
        w.add_tensor(p + "layer_output_scale.weight", ones(1))
        if e2b:
            w.add_tensor(p + "inp_gate.weight", mat(C["per_layer"], H))
            w.add_tensor(p + "proj.weight", mat(H, C["per_layer"]))
            w.add_tensor(p + "post_norm.weight", ones(H))
    write_out(w)


source = os.path.join(work, "gemma4_e2b_12_layers.gguf" if e2b else "gemma4_12_layers.gguf")
write_model(source)
fixture = {"made_by": MADE_BY + "a synthetic gemma4 GGUF file (scripts/make_llama_quantize_gemma4.py" + (" E2B)" if e2b else ")"),
           "config": C,
           "types": {t: quantized_types(quantize, source, os.path.join(work, f"gemma4-{t}.gguf"), t.upper()) for t in TYPES}}
save(fixture, out)
