"""llama-quantize's tensor types on synthetic mixture-of-experts GGUF files (random F16 weights:
only shapes and hyperparameters matter), for tests/test_gguf_moe_export.cpp: a qwen3moe model
(4 experts whose 384-wide down projections cannot hold k-quants), a Mixtral-like llama model with
8 experts (llama.cpp's 8-expert rules for attn_k, attn_v and attn_output), a qwen2moe model with
a shared expert (ffn_*_shexp, and its ffn_gate_inp_shexp gate) and a deepseek2 model (DeepSeek-V3's
latent attention as its converter writes it: attn_q_a, attn_q_b, attn_kv_a_mqa, attn_k_b whose
128-wide rows cannot hold k-quants, attn_v_b; 8 experts, a dense first block, a shared expert). Writes
tests/fixtures/llama_quantize_types_moe.json: per model its config and, per file type (and
gguf:mxfp4: MXFP4_MOE with the block linears overridden to mxfp4), every 2-D and 3-D tensor's
[type name, ne[0]] as llama-quantize wrote it.
usage: python make_llama_quantize_moe.py LLAMA_QUANTIZE OUT_JSON WORK_DIR
       (python: one with gguf-py and numpy, e.g. ~/.cache/autoround-cpp/pyenv/bin/python;
        LLAMA_QUANTIZE: scripts/build-llama-cpp.sh's build/bin/llama-quantize)"""
import os
import sys

import numpy as np
from gguf import GGUFWriter

from llama_quantize_types import MADE_BY, TYPES, quantized_types, save, write_out

quantize, out, work = sys.argv[1:]
CONFIGS = {
    "qwen3moe_8_layers_4_experts": dict(arch="qwen3moe", layers=8, hidden=256, heads=8, kv_heads=2, vocab=512,
                                        experts=4, used=2, expert_ff=384, shared_ff=0),
    "mixtral_like_8_layers_8_experts": dict(arch="llama", layers=8, hidden=256, heads=8, kv_heads=2, vocab=512,
                                            experts=8, used=2, expert_ff=256, shared_ff=0),
    "qwen2moe_8_layers_4_experts_shared": dict(arch="qwen2moe", layers=8, hidden=256, heads=8, kv_heads=2, vocab=512,
                                               experts=4, used=2, expert_ff=256, shared_ff=512),
    "deepseek2_8_layers_8_experts_mla": dict(arch="deepseek2", layers=8, hidden=256, heads=4, kv_heads=4, vocab=512,
                                             experts=8, used=2, expert_ff=256, shared_ff=256, dense=1, ff=512,
                                             q_lora=256, kv_lora=256, nope=128, rope=64, v_head=128),
}
rng = np.random.default_rng(0)


def write_model(path, c):
    arch, H, hd = c["arch"], c["hidden"], c["hidden"] // c["heads"]
    w = GGUFWriter(path, arch)
    w.add_name("synthetic")
    w.add_block_count(c["layers"])
    w.add_context_length(2048)
    w.add_embedding_length(H)
    w.add_feed_forward_length(c.get("ff", c["expert_ff"]))
    w.add_head_count(c["heads"])
    w.add_head_count_kv(1 if arch == "deepseek2" else c["kv_heads"])
    w.add_layer_norm_rms_eps(1e-6)
    mla = arch == "deepseek2"
    w.add_rope_dimension_count(c["rope"] if mla else hd)
    w.add_vocab_size(c["vocab"])
    w.add_expert_count(c["experts"])
    w.add_expert_used_count(c["used"])
    if arch != "llama":
        w.add_expert_feed_forward_length(c["expert_ff"])
    if c["shared_ff"] and arch != "deepseek2":
        w.add_expert_shared_feed_forward_length(c["shared_ff"])
    if mla:  # as llama.cpp's converter writes DeepSeek-V3 (conversion/deepseek.py)
        w.add_uint32("deepseek2.attention.q_lora_rank", c["q_lora"])
        w.add_uint32("deepseek2.attention.kv_lora_rank", c["kv_lora"])
        w.add_key_length(c["kv_lora"] + c["rope"])
        w.add_value_length(c["kv_lora"])
        w.add_uint32("deepseek2.attention.key_length_mla", c["nope"] + c["rope"])
        w.add_uint32("deepseek2.attention.value_length_mla", c["v_head"])
        w.add_leading_dense_block_count(c["dense"])
        w.add_expert_shared_count(c["shared_ff"] // c["expert_ff"])
        w.add_uint32("deepseek2.expert_gating_func", 2)
        w.add_expert_weights_scale(2.5)
        w.add_expert_weights_norm(True)
        w.add_uint32("deepseek2.expert_group_count", 2)
        w.add_uint32("deepseek2.expert_group_used_count", 1)
    w.add_file_type(1)
    mat = lambda *shape: rng.standard_normal(shape).astype(np.float16)
    ones = lambda n: np.ones(n, np.float32)
    w.add_tensor("token_embd.weight", mat(c["vocab"], H))
    w.add_tensor("output_norm.weight", ones(H))
    w.add_tensor("output.weight", mat(c["vocab"], H))
    E, I = c["experts"], c["expert_ff"]
    for b in range(c["layers"]):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", ones(H))
        if mla:
            n, qk, rank = c["heads"], c["nope"] + c["rope"], c["kv_lora"]
            w.add_tensor(p + "attn_q_a.weight", mat(c["q_lora"], H))
            w.add_tensor(p + "attn_q_a_norm.weight", ones(c["q_lora"]))
            w.add_tensor(p + "attn_q_b.weight", mat(n * qk, c["q_lora"]))
            w.add_tensor(p + "attn_kv_a_mqa.weight", mat(rank + c["rope"], H))
            w.add_tensor(p + "attn_kv_a_norm.weight", ones(rank))
            w.add_tensor(p + "attn_k_b.weight", mat(n, rank, c["nope"]))
            w.add_tensor(p + "attn_v_b.weight", mat(n, c["v_head"], rank))
            w.add_tensor(p + "attn_output.weight", mat(H, n * c["v_head"]))
        else:
            w.add_tensor(p + "attn_q.weight", mat(c["heads"] * hd, H))
            w.add_tensor(p + "attn_k.weight", mat(c["kv_heads"] * hd, H))
            w.add_tensor(p + "attn_v.weight", mat(c["kv_heads"] * hd, H))
            w.add_tensor(p + "attn_output.weight", mat(H, c["heads"] * hd))
        if arch == "qwen3moe":
            w.add_tensor(p + "attn_q_norm.weight", ones(hd))
            w.add_tensor(p + "attn_k_norm.weight", ones(hd))
        if arch == "qwen2moe":
            for t, n in (("attn_q", c["heads"] * hd), ("attn_k", c["kv_heads"] * hd), ("attn_v", c["kv_heads"] * hd)):
                w.add_tensor(p + t + ".bias", np.zeros(n, np.float32))
        w.add_tensor(p + "ffn_norm.weight", ones(H))
        if b < c.get("dense", 0):
            w.add_tensor(p + "ffn_gate.weight", mat(c["ff"], H))
            w.add_tensor(p + "ffn_up.weight", mat(c["ff"], H))
            w.add_tensor(p + "ffn_down.weight", mat(H, c["ff"]))
            continue
        w.add_tensor(p + "ffn_gate_inp.weight", rng.standard_normal((E, H)).astype(np.float32))
        if mla:
            w.add_tensor(p + "exp_probs_b.bias", np.zeros(E, np.float32))
        w.add_tensor(p + "ffn_gate_exps.weight", mat(E, I, H))
        w.add_tensor(p + "ffn_up_exps.weight", mat(E, I, H))
        w.add_tensor(p + "ffn_down_exps.weight", mat(E, H, I))
        if c["shared_ff"]:
            S = c["shared_ff"]
            if not mla:  # qwen2moe's gate of the shared expert
                w.add_tensor(p + "ffn_gate_inp_shexp.weight", np.zeros(H, np.float32))
            w.add_tensor(p + "ffn_gate_shexp.weight", mat(S, H))
            w.add_tensor(p + "ffn_up_shexp.weight", mat(S, H))
            w.add_tensor(p + "ffn_down_shexp.weight", mat(H, S))
    write_out(w)


fixture = {"made_by": MADE_BY + "synthetic MoE GGUF files (scripts/make_llama_quantize_moe.py)", "models": {}}
# gguf:mxfp4: MXFP4_MOE with every block linear overridden to mxfp4 (as make_llama_quantize_fixture.sh)
MXFP4 = ["--tensor-type", "attn_(q|k|v|output)=mxfp4", "--tensor-type", "ffn_(gate|up|down)=mxfp4"]
for name, c in CONFIGS.items():
    source = os.path.join(work, name + ".gguf")
    write_model(source, c)
    fixture["models"][name] = {"config": c, "types": {
        t: quantized_types(quantize, source, os.path.join(work, f"{name}-{t}.gguf"), "MXFP4_MOE" if t == "mxfp4" else t.upper(),
                           MXFP4 if t == "mxfp4" else ()) for t in TYPES + ["mxfp4"]}}
save(fixture, out)
