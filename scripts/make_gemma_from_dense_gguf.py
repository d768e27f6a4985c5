"""A Gemma-architecture GGUF made from a dense LLaMA-family GGUF (the asset, SmolLM2-135M), for
checking that llama.cpp and autoround-cpp compute the same Gemma model (scripts/moe-llama-check.sh,
ARCHS=gemma3 / gemma2): the source's blocks and tokenizer under llama.cpp's gemma3 or gemma2
graph: the embedding divided by √hidden (the graph multiplies it back; the final norm by √hidden
for the tied LM head), GELU-tanh in the MLP, the
sandwich norms post_attention_norm and post_ffw_norm added with weight POST (llama.cpp's files store
Gemma's 1 + w), NEOX RoPE on the source's q/k rows put back in Hugging Face's order, a sliding window of WINDOW
tokens in llama.cpp's default pattern (gemma3: 5 sliding layers then a full one, the sliding ones
at RoPE base 10000; gemma2: alternating), gemma3's per-head q/k norms of ones, gemma2's soft-caps
50 and 30 written out. gemma4 (llama.cpp's gemma4 graph, its 31B's dense layout): norms stored as
w (no 1 +), the sliding pattern as one bool per layer (5 sliding, then a full one), the full
layers without attn_v (their values are attn_k's output: attention_k_eq_v) and with proportional
RoPE (rope_freqs.weight: a quarter of the pairs turn, the rest 1e30), head_count_kv one per layer,
q/k norms of head_dim^-1/4 (its scores are not scaled: this gives the source's 1/√head_dim on
unit-RMS heads), layer_output_scale 0.9, final soft-cap 30, no per-layer embeddings. A different
model from the source, the same for both tools. gemma4moe: that gemma4 model with the 26B-A4B's
experts beside every dense MLP: 8 experts (expert_used_count 2), expert e the e-th 192-wide slice of
the source's MLP (its gate and up rows fused into ffn_gate_up_exps, each expert's gate rows then its
up rows, as llama.cpp's converter writes them; its down columns in ffn_down_exps), a router
ffn_gate_inp of N(0, 1) entries (seeded) with ffn_gate_inp.scale of ones, per-expert scales
(ffn_down_exps.scale) 0.6 ... 1.3, pre_ffw_norm_2 the source's ffn_norm, post_ffw_norm_1 / _2 of
POST. gemma4e2b: that gemma4 model with Gemma 4 E2B's pieces: per-layer embeddings of P = 64
(per_layer_token_embd [vocab, layers · 64] and per_layer_model_proj [layers · 64, hidden] of
N(0, 0.02) and N(0, 0.05) entries, per_layer_proj_norm of ones; per layer inp_gate [64, hidden] of
N(0, 0.05), proj [hidden, 64] of N(0, 0.05), post_norm of POST; seeded) and, from the last layer
(6 or later) whose two predecessors are [sliding, full] on (of 30 layers: 24; of 12: 6), the layers
attending with those two layers' keys and
values (attention.shared_kv_layers; no attn_k / attn_v / attn_k_norm), their MLPs as wide as the
others' (E4B's). Matrices F16, norms F32. Needs gguf-py and numpy.
The result is no language model (llama.cpp and we agree on perplexities in the millions: the
sandwich norms flatten the source's massive activations); a sharp model like that magnifies
rounding differences between two tools with depth, so LAYERS (the first blocks only) is offered.
usage: python make_gemma_from_dense_gguf.py SOURCE.gguf OUT.gguf ARCH(gemma3|gemma2|gemma4|gemma4moe|gemma4e2b) [WINDOW=128] [POST=0.5] [LAYERS=all]"""
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize

source, out, arch = sys.argv[1:4]
experts = arch == "gemma4moe"  # (llama.cpp's gemma4 with experts)
e2b = arch == "gemma4e2b"  # (llama.cpp's gemma4 with per-layer embeddings and shared KV layers)
if experts or e2b:
    arch = "gemma4"
PER_LAYER = 64
EXPERTS, EXPERT_FF = 8, 192
window = int(sys.argv[4]) if len(sys.argv) > 4 else 128
post = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
reader = GGUFReader(source)
src_arch = reader.fields["general.architecture"].contents()


def value(key):
    return reader.fields[key].contents()


def tensor(name):
    t = next(x for x in reader.tensors if x.name == name)
    x = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
    return x if x.ndim == 1 else x.astype(np.float16)


def unpermute(x, n_head):
    """The inverse of llama.cpp's converter's permutation of LLaMA's q/k rows (adjacent-pair RoPE)."""
    return x.reshape(n_head, x.shape[0] // n_head // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


w = GGUFWriter(out, arch)
for key, field in reader.fields.items():  # the tokenizer and general.* keys as they are
    if key.startswith("tokenizer.") or (key.startswith("general.") and key not in ("general.architecture", "general.file_type")):
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub)
hidden = int(value(f"{src_arch}.embedding_length"))
heads, kv_heads = int(value(f"{src_arch}.attention.head_count")), int(value(f"{src_arch}.attention.head_count_kv"))
layers = int(sys.argv[6]) if len(sys.argv) > 6 else int(value(f"{src_arch}.block_count"))
head_dim = hidden // heads
w.add_block_count(layers)
w.add_context_length(int(value(f"{src_arch}.context_length")))
w.add_embedding_length(hidden)
w.add_feed_forward_length(int(value(f"{src_arch}.feed_forward_length")))
w.add_head_count(heads)
full = [b % 6 == 5 for b in range(layers)]  # gemma4: llama.cpp's default pattern, written out
first_shared = layers
if e2b:  # the first layer (from 6 on) whose two predecessors are [sliding, full]: the rest share their keys and values
    candidates = [b for b in range(6, layers) if full[b - 1] and not full[b - 2]]
    first_shared = candidates[-1] if candidates else layers  # the last such layer: most layers keep their own keys
shared = [b >= first_shared for b in range(layers)]
rng = np.random.default_rng(7)
if arch == "gemma4":
    w.add_head_count_kv([kv_heads] * layers)
    w.add_key_length_swa(head_dim)
    w.add_value_length_swa(head_dim)
    w.add_sliding_window_pattern([not f for f in full])
    w.add_uint32("gemma4.embedding_length_per_layer_input", PER_LAYER if e2b else 0)
    w.add_uint32("gemma4.attention.shared_kv_layers", layers - first_shared)
    w.add_rope_freq_base_swa(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_uint32("gemma4.rope.dimension_count_swa", head_dim)
    w.add_final_logit_softcapping(30.0)
    if experts:
        w.add_expert_count(EXPERTS)
        w.add_expert_used_count(2)
        w.add_expert_feed_forward_length(EXPERT_FF)
else:
    w.add_head_count_kv(kv_heads)
w.add_key_length(head_dim)
w.add_value_length(head_dim)
w.add_layer_norm_rms_eps(float(value(f"{src_arch}.attention.layer_norm_rms_epsilon")))
w.add_rope_freq_base(float(value(f"{src_arch}.rope.freq_base")))
w.add_sliding_window(window)
if arch == "gemma2":
    w.add_attn_logit_softcapping(50.0)
    w.add_final_logit_softcapping(30.0)
w.add_vocab_size(int(value(f"{src_arch}.vocab_size")))
w.add_file_type(1)
w.add_tensor("token_embd.weight", (tensor("token_embd.weight").astype(np.float32) / np.sqrt(hidden)).astype(np.float16))
# the LM head is the (tied) embedding, now divided by √hidden: the final norm multiplies it back
w.add_tensor("output_norm.weight", tensor("output_norm.weight") * np.float32(np.sqrt(hidden)))
if arch == "gemma4":  # the full layers' proportional RoPE: a quarter of the pairs turn
    w.add_tensor("rope_freqs.weight", np.array([1.0] * (head_dim // 8) + [1e30] * (head_dim // 2 - head_dim // 8), np.float32))
if e2b:
    vocab = int(value(f"{src_arch}.vocab_size"))
    w.add_tensor("per_layer_token_embd.weight", (0.02 * rng.standard_normal((vocab, layers * PER_LAYER))).astype(np.float16))
    w.add_tensor("per_layer_model_proj.weight", (0.05 * rng.standard_normal((layers * PER_LAYER, hidden))).astype(np.float16))
    w.add_tensor("per_layer_proj_norm.weight", np.ones(PER_LAYER, np.float32))
for b in range(layers):
    p = f"blk.{b}."
    for name in ("attn_norm", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"):
        if arch == "gemma4" and name == "attn_v" and (full[b] or shared[b]):
            continue  # its values: attn_k's output, or (shared) another layer's
        w.add_tensor(p + name + ".weight", tensor(p + name + ".weight"))
    for name, n in (("attn_q", heads), ("attn_k", kv_heads)):  # back to Hugging Face's row order for NEOX RoPE
        if name == "attn_k" and shared[b]:
            continue
        x = tensor(p + name + ".weight")
        w.add_tensor(p + name + ".weight", unpermute(x, n) if src_arch == "llama" else x)
    if arch == "gemma3":
        w.add_tensor(p + "attn_q_norm.weight", np.ones(head_dim, np.float32))
        w.add_tensor(p + "attn_k_norm.weight", np.ones(head_dim, np.float32))
    if arch == "gemma4":
        w.add_tensor(p + "attn_q_norm.weight", np.full(head_dim, head_dim ** -0.25, np.float32))
        if not shared[b]:
            w.add_tensor(p + "attn_k_norm.weight", np.full(head_dim, head_dim ** -0.25, np.float32))
        w.add_tensor(p + "layer_output_scale.weight", np.full(1, 0.9, np.float32))
    if e2b:
        w.add_tensor(p + "inp_gate.weight", (0.05 * rng.standard_normal((PER_LAYER, hidden))).astype(np.float16))
        w.add_tensor(p + "proj.weight", (0.05 * rng.standard_normal((hidden, PER_LAYER))).astype(np.float16))
        w.add_tensor(p + "post_norm.weight", np.full(hidden, post, np.float32))
    w.add_tensor(p + "post_attention_norm.weight", np.full(hidden, post, np.float32))
    w.add_tensor(p + "post_ffw_norm.weight", np.full(hidden, post, np.float32))
    if experts:  # numpy shapes are ne reversed: [experts, rows, cols]
        gate, up, down = (tensor(p + n + ".weight") for n in ("ffn_gate", "ffn_up", "ffn_down"))
        rows = [slice(e * EXPERT_FF, (e + 1) * EXPERT_FF) for e in range(EXPERTS)]
        w.add_tensor(p + "ffn_gate_up_exps.weight", np.stack([np.concatenate([gate[r], up[r]]) for r in rows]))
        w.add_tensor(p + "ffn_down_exps.weight", np.stack([np.ascontiguousarray(down[:, r]) for r in rows]))
        w.add_tensor(p + "ffn_down_exps.scale", np.linspace(0.6, 1.3, EXPERTS).astype(np.float32))
        w.add_tensor(p + "ffn_gate_inp.weight", np.random.default_rng(b).standard_normal((EXPERTS, hidden)).astype(np.float32))
        w.add_tensor(p + "ffn_gate_inp.scale", np.ones(hidden, np.float32))
        w.add_tensor(p + "pre_ffw_norm_2.weight", tensor(p + "ffn_norm.weight"))
        w.add_tensor(p + "post_ffw_norm_1.weight", np.full(hidden, post, np.float32))
        w.add_tensor(p + "post_ffw_norm_2.weight", np.full(hidden, post, np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", out)
