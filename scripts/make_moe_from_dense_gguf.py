"""A mixture-of-experts GGUF made from a dense LLaMA-family GGUF (the asset, SmolLM2-135M), for
checking that llama.cpp and autoround-cpp compute the same MoE model (scripts/moe-llama-check.sh):
its first LAYERS blocks (0: all), each dense MLP turned into EXPERTS experts (expert e: the MLP
with its gate and up scaled by 1 + e/16, so the experts differ, routing matters, and the model
stays a language model), a random router (seeded; scaled so that routing is far from uniform),
top 2 renormalized; the tokenizer and every other setting copied; matrices F16, norms F32. ARCH llama writes llama with experts (Mixtral's layout);
qwen3moe adds per-head q/k norms of ones and uses llama.cpp's qwen3moe graph (NEOX RoPE on the
same weights: a different model, the same for both tools); qwen2moe adds zero q/k/v biases and a
shared expert (the dense MLP with its down halved) behind a random sigmoid gate (NEOX RoPE too).
glm4moe (GLM-4.5) keeps block 0 dense (leading_dense_block_count 1), routes by sigmoid scores with
a random correction bias (exp_probs_b) in 2 groups of which 1 is kept, renormalized × 1.5, adds an
ungated shared expert (the dense MLP with its down halved), zero q/k/v biases, the norm before the
MLP as post_attention_norm, q/k norms of ones, and rotates half of each head (rope.dimension_count):
GLM's options, on rows that llama.cpp's converter permuted for adjacent-pair RoPE (a model far from a
language model: perplexity ~7e7 on kjv-eval; the same for both tools). With ROT=full it un-permutes
q/k, rotates whole heads and has no q/k norms instead: the asset's attention under NEOX RoPE.
gpt-oss (GPT-OSS) un-permutes q/k (NEOX), adds zero q/k/v/o biases, attention sinks of -20 (their
share of each softmax ~e-20 of the rest), the norm before the MLP as post_attention_norm, YaRN
(factor 32 of 4096: the low-frequency pairs stretched), a 128-token window on even layers, a zero
router bias, rope.scaling.attn_factor 1 / 1.35 (cancelling YaRN's magnitude factor, so that q.k keeps
its scale; both tools multiply it in), and experts through swiglu_oai written so that they compute the dense MLP's SwiGLU
where no clamp binds: gate / 1.702 (so g' sigma(1.702 g') = silu(g) / 1.702), down x 1.702, up
bias -1 (cancelling its "+ 1"), zero gate / down biases (a language model still; the window and
YaRN perturb it; the same for both tools).
deepseek2 (DeepSeek-V3) routes and shares an expert as glm4moe (its block 0 dense) and turns each
attention into multi-head latent attention computing the asset's attention without RoPE (one roped
key part per token cannot hold 3 KV heads' rotations) plus a small roped term: attn_norm of ones,
attn_q_a and the latent part of attn_kv_a_mqa identities (q_lora_rank = kv_lora_rank = hidden), both
latent norms the asset's attn_norm (so q_b and kv_b read its normed state), attn_q_b per head
[the asset's q rows x c | DR random rows], attn_k_b / attn_v_b per head the asset's k / v rows of
the head's KV head (kv_b split as llama.cpp's converter splits it), DR random rows for the shared
roped key; YaRN x4 from 512 positions with yarn_log_multiplier 0.1 (mscale_all_dim 1); c undoes the
score scale (1 + 0.1 ln 4)^2 / sqrt(64 + DR) so that q.k is the asset's / 8. A NoPE model: far from
the asset's perplexity, the same for both tools.
Needs gguf-py and numpy.
usage: python make_moe_from_dense_gguf.py SOURCE.gguf OUT.gguf ARCH(llama|qwen3moe|qwen2moe|glm4moe|gpt-oss|deepseek2) [LAYERS=0] [EXPERTS=4]"""
import os
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize

source, out, arch = sys.argv[1:4]
layers = int(sys.argv[4]) if len(sys.argv) > 4 else 0
experts = int(sys.argv[5]) if len(sys.argv) > 5 else 4
reader = GGUFReader(source)
src_arch = reader.fields["general.architecture"].contents()
rng = np.random.default_rng(7)


def value(key):
    return reader.fields[key].contents()


def tensor(name):
    t = next(x for x in reader.tensors if x.name == name)
    x = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
    return x if x.ndim == 1 else x.astype(np.float16)


w = GGUFWriter(out, arch)
for key, field in reader.fields.items():  # the tokenizer and general.* keys as they are
    if key.startswith("tokenizer.") or (key.startswith("general.") and key not in ("general.architecture", "general.file_type")):
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub)
hidden = int(value(f"{src_arch}.embedding_length"))
heads, kv_heads = int(value(f"{src_arch}.attention.head_count")), int(value(f"{src_arch}.attention.head_count_kv"))
ff = int(value(f"{src_arch}.feed_forward_length"))
layers = layers or int(value(f"{src_arch}.block_count"))
w.add_block_count(layers)
w.add_context_length(int(value(f"{src_arch}.context_length")))
w.add_embedding_length(hidden)
w.add_feed_forward_length(ff)
w.add_head_count(heads)
w.add_head_count_kv(1 if arch == "deepseek2" else kv_heads)
w.add_layer_norm_rms_eps(float(value(f"{src_arch}.attention.layer_norm_rms_epsilon")))
w.add_rope_freq_base(float(value(f"{src_arch}.rope.freq_base")))
oss = arch == "gpt-oss"
if oss:
    from gguf import RopeScalingType
    w.add_key_length(hidden // heads)
    w.add_value_length(hidden // heads)
    w.add_sliding_window(128)
    w.add_rope_scaling_type(RopeScalingType.YARN)
    w.add_rope_scaling_factor(32.0)
    w.add_rope_scaling_orig_ctx_len(4096)
    w.add_rope_scaling_attn_factors(1 / (0.1 * np.log(32.0) + 1))  # undoes YaRN's 1.35 on cos and sin (llama.cpp multiplies both)
half = arch == "glm4moe" and os.environ.get("ROT", "half") != "full"
mla = arch == "deepseek2"
DR = 32  # deepseek2: the roped dimensions of each query head and of the shared key
if mla:
    from gguf import RopeScalingType
    hd = hidden // heads
    w.add_uint32("deepseek2.attention.q_lora_rank", hidden)
    w.add_uint32("deepseek2.attention.kv_lora_rank", hidden)
    w.add_key_length(hidden + DR)
    w.add_value_length(hidden)
    w.add_uint32("deepseek2.attention.key_length_mla", hd + DR)
    w.add_uint32("deepseek2.attention.value_length_mla", hd)
    w.add_rope_scaling_type(RopeScalingType.YARN)
    w.add_rope_scaling_factor(4.0)
    w.add_rope_scaling_orig_ctx_len(512)
    w.add_float32("deepseek2.rope.scaling.yarn_log_multiplier", 0.1)
w.add_rope_dimension_count(DR if mla else hidden // heads // (2 if half else 1))
w.add_vocab_size(int(value(f"{src_arch}.vocab_size")))
w.add_expert_count(experts)
w.add_expert_used_count(2)
if arch in ("qwen3moe", "qwen2moe", "glm4moe", "gpt-oss", "deepseek2"):
    w.add_expert_feed_forward_length(ff)
if arch in ("glm4moe", "deepseek2"):
    w.add_expert_shared_count(1)
    w.add_leading_dense_block_count(1)
    w.add_uint32(f"{arch}.expert_gating_func", 2)  # sigmoid (ExpertGatingFuncType.SIGMOID)
    w.add_expert_weights_scale(1.5)
    w.add_expert_weights_norm(True)
    w.add_uint32(f"{arch}.expert_group_count", 2)
    w.add_uint32(f"{arch}.expert_group_used_count", 1)
    w.add_uint32(f"{arch}.nextn_predict_layers", 0)
if arch == "qwen2moe":
    w.add_expert_shared_feed_forward_length(ff)
w.add_file_type(1)
w.add_tensor("token_embd.weight", tensor("token_embd.weight"))
w.add_tensor("output_norm.weight", tensor("output_norm.weight"))
if any(t.name == "output.weight" for t in reader.tensors):
    w.add_tensor("output.weight", tensor("output.weight"))
elif arch in ("qwen2moe", "gpt-oss"):  # llama.cpp's qwen2moe and gpt-oss graphs need their own LM head: the tied one, copied
    w.add_tensor("output.weight", tensor("token_embd.weight"))
for b in range(layers):
    p = f"blk.{b}."
    if mla:  # latent attention computing the asset's (without RoPE) plus a small roped term
        hd, group = hidden // heads, heads // kv_heads
        g = tensor(p + "attn_norm.weight")
        q, k, v = (tensor(p + n + ".weight").astype(np.float32) for n in ("attn_q", "attn_k", "attn_v"))
        c = np.sqrt(hd + DR) / (8.0 * (0.1 * np.log(4.0) + 1) ** 2)
        small = lambda r: (rng.standard_normal((r, hidden)) * 0.3 / np.sqrt(hidden)).astype(np.float32)
        w.add_tensor(p + "attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(p + "attn_q_a.weight", np.eye(hidden, dtype=np.float16))
        w.add_tensor(p + "attn_q_a_norm.weight", g)
        w.add_tensor(p + "attn_q_b.weight", np.concatenate(
            [np.concatenate([q[h * hd:(h + 1) * hd] * c, small(DR)]) for h in range(heads)]).astype(np.float16))
        w.add_tensor(p + "attn_kv_a_mqa.weight", np.concatenate([np.eye(hidden, dtype=np.float32), small(DR)]).astype(np.float16))
        w.add_tensor(p + "attn_kv_a_norm.weight", g)
        kv = lambda m, h: m[(h // group) * hd:(h // group + 1) * hd]  # head h's KV head's rows
        w.add_tensor(p + "attn_k_b.weight", np.stack([kv(k, h).T for h in range(heads)]).astype(np.float16))  # [heads, rank, dn]
        w.add_tensor(p + "attn_v_b.weight", np.stack([kv(v, h) for h in range(heads)]).astype(np.float16))  # [heads, dv, rank]
        w.add_tensor(p + "attn_output.weight", tensor(p + "attn_output.weight"))
        w.add_tensor(p + "ffn_norm.weight", tensor(p + "ffn_norm.weight"))
        if b == 0:  # dense
            for name in ("ffn_gate", "ffn_up", "ffn_down"):
                w.add_tensor(p + name + ".weight", tensor(p + name + ".weight"))
            continue
    for name in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm") if not mla else ():
        out_name = "post_attention_norm" if arch in ("glm4moe", "gpt-oss") and name == "ffn_norm" else name
        x = tensor(p + name + ".weight")
        if (oss or (arch == "glm4moe" and not half)) and name in ("attn_q", "attn_k") and src_arch == "llama":  # undo the converter's permute
            n = heads if name == "attn_q" else kv_heads
            x = x.reshape(n, x.shape[0] // n // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
        w.add_tensor(p + out_name + ".weight", x)
    if arch == "glm4moe":
        hd = hidden // heads
        for name, n in (("attn_q", heads * hd), ("attn_k", kv_heads * hd), ("attn_v", kv_heads * hd)):
            w.add_tensor(p + name + ".bias", np.zeros(n, np.float32))
        if half:
            w.add_tensor(p + "attn_q_norm.weight", np.ones(hd, np.float32))
            w.add_tensor(p + "attn_k_norm.weight", np.ones(hd, np.float32))
        if b == 0:  # dense
            for name in ("ffn_gate", "ffn_up", "ffn_down"):
                w.add_tensor(p + name + ".weight", tensor(p + name + ".weight"))
            continue
    if oss:
        hd = hidden // heads
        for name, n in (("attn_q", heads * hd), ("attn_k", kv_heads * hd), ("attn_v", kv_heads * hd), ("attn_output", hidden)):
            w.add_tensor(p + name + ".bias", np.zeros(n, np.float32))
        w.add_tensor(p + "attn_sinks.weight", np.full(heads, -20.0, np.float32))
    if arch == "qwen3moe":
        w.add_tensor(p + "attn_q_norm.weight", np.ones(hidden // heads, np.float32))
        w.add_tensor(p + "attn_k_norm.weight", np.ones(hidden // heads, np.float32))
    if arch == "qwen2moe":
        hd = hidden // heads
        for name, n in (("attn_q", heads * hd), ("attn_k", kv_heads * hd), ("attn_v", kv_heads * hd)):
            w.add_tensor(p + name + ".bias", np.zeros(n, np.float32))
    gate, up, down = tensor(p + "ffn_gate.weight"), tensor(p + "ffn_up.weight"), tensor(p + "ffn_down.weight")
    scales = [np.float16(1 + e / 16) for e in range(experts)]
    w.add_tensor(p + "ffn_gate_inp.weight", (rng.standard_normal((experts, hidden)) * 4 / np.sqrt(hidden)).astype(np.float32))
    if oss:  # swiglu_oai(g', u') = min(g', 7) sigma(1.702 min(g', 7)) (clamp(u', +-7) + 1) with g' = g / 1.702, u' = u - 1
        gate, down = (gate.astype(np.float32) / 1.702).astype(np.float16), (down.astype(np.float32) * 1.702).astype(np.float16)
        w.add_tensor(p + "ffn_gate_inp.bias", np.zeros(experts, np.float32))
        w.add_tensor(p + "ffn_gate_exps.bias", np.zeros((experts, ff), np.float32))
        w.add_tensor(p + "ffn_up_exps.bias", np.full((experts, ff), -1.0, np.float32))
        w.add_tensor(p + "ffn_down_exps.bias", np.zeros((experts, hidden), np.float32))
    w.add_tensor(p + "ffn_gate_exps.weight", np.stack([s * gate for s in scales]))
    w.add_tensor(p + "ffn_up_exps.weight", np.stack([s * up for s in scales]))
    w.add_tensor(p + "ffn_down_exps.weight", np.stack([down for _ in scales]))
    if arch in ("glm4moe", "deepseek2"):
        w.add_tensor(p + "exp_probs_b.bias", (0.1 * rng.standard_normal(experts)).astype(np.float32))
    if arch in ("qwen2moe", "glm4moe", "deepseek2"):
        if arch == "qwen2moe":
            w.add_tensor(p + "ffn_gate_inp_shexp.weight", (rng.standard_normal(hidden) / np.sqrt(hidden)).astype(np.float32))
        w.add_tensor(p + "ffn_gate_shexp.weight", gate)
        w.add_tensor(p + "ffn_up_shexp.weight", up)
        w.add_tensor(p + "ffn_down_shexp.weight", (down * np.float16(0.5)).astype(np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", out)
