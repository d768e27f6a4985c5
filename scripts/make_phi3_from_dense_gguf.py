"""A phi3 GGUF (llama.cpp's Phi-3 layout) made from a dense LLaMA-family GGUF (the asset,
SmolLM2-135M), for checking that llama.cpp and autoround-cpp read, compute and write phi3 files
alike: each block's q, k and v fused into attn_qkv (rows [Q | K | V]; q and k rows un-permuted from
llama.cpp's adjacent-pair order, since phi3 rotates NEOX pairs: the asset's attention as it was
trained) and gate and up into ffn_up (rows [gate | up]); LongRoPE's global rope_factors_short /
rope_factors_long (short: 1 rising to 1.25 over the pairs, long: 1 rising to 4),
rope.scaling.original_context_length 2048 under context_length 8192 (so attn_factor
sqrt(1 + ln 4 / ln 2048) on cos and sin, as Phi-3's converter computes it) and
attention.sliding_window 2047 (which llama.cpp sets aside for phi3). The quantized tensors keep
their type and bytes (rows moved whole: every ggml row is whole blocks); the tokenizer and general.*
keys are copied. A language model still (the factors and attn_factor perturb it a little); the
same model for both tools. Needs gguf-py and numpy.
usage: python make_phi3_from_dense_gguf.py SOURCE.gguf OUT.gguf"""
import math
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

source, out = sys.argv[1:3]
reader = GGUFReader(source)
src_arch = reader.fields["general.architecture"].contents()
assert src_arch == "llama", "the source must be llama (its q/k rows permuted for adjacent pairs)"


def value(key):
    return reader.fields[key].contents()


tensors = {t.name: t for t in reader.tensors}


def rows(name):
    """A tensor's rows as stored: [rows, row bytes] (or [rows, cols] for float types), its type."""
    t = tensors[name]
    data = np.asarray(t.data)
    return data.reshape(int(t.shape[1]) if len(t.shape) > 1 else 1, -1), t.tensor_type


def unpermute(x, n_heads):  # llama.cpp's converter permuted each head's rows for adjacent-pair RoPE
    return x.reshape(n_heads, x.shape[0] // n_heads // 2, 2, x.shape[1]).swapaxes(1, 2).reshape(x.shape)


def add(name, x, qtype):
    if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        w.add_tensor(name, np.ascontiguousarray(x))
    else:  # whole rows of blocks, moved as bytes
        w.add_tensor(name, np.ascontiguousarray(x), raw_dtype=qtype)


w = GGUFWriter(out, "phi3")
for key, field in reader.fields.items():
    if key.startswith("tokenizer.") or (key.startswith("general.") and key not in ("general.architecture", "general.file_type")):
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub)
hidden = int(value("llama.embedding_length"))
heads, kv_heads = int(value("llama.attention.head_count")), int(value("llama.attention.head_count_kv"))
ff = int(value("llama.feed_forward_length"))
layers = int(value("llama.block_count"))
head_dim = hidden // heads
original, context = 2048, 8192
w.add_context_length(context)
w.add_uint32("phi3.rope.scaling.original_context_length", original)
w.add_float32("phi3.rope.scaling.attn_factor", math.sqrt(1 + math.log(context / original) / math.log(original)))
w.add_embedding_length(hidden)
w.add_feed_forward_length(ff)
w.add_block_count(layers)
w.add_head_count(heads)
w.add_head_count_kv(kv_heads)
w.add_layer_norm_rms_eps(float(value("llama.attention.layer_norm_rms_epsilon")))
w.add_rope_dimension_count(head_dim)
w.add_rope_freq_base(float(value("llama.rope.freq_base")))
w.add_sliding_window(2047)
w.add_file_type(int(value("general.file_type")))
pairs = head_dim // 2
w.add_tensor("rope_factors_long.weight", np.linspace(1.0, 4.0, pairs, dtype=np.float32))
w.add_tensor("rope_factors_short.weight", np.linspace(1.0, 1.25, pairs, dtype=np.float32))
for name in ("token_embd.weight", "output_norm.weight", "output.weight"):
    if name in tensors:
        x, qtype = rows(name)
        if len(tensors[name].shape) == 1:
            w.add_tensor(name, x.reshape(-1))
        else:
            add(name, x, qtype)
for b in range(layers):
    p = f"blk.{b}."
    for name in ("attn_norm", "ffn_norm"):
        x, qtype = rows(p + name + ".weight")
        w.add_tensor(p + name + ".weight", x.reshape(-1))
    q, qt = rows(p + "attn_q.weight")
    k, kt = rows(p + "attn_k.weight")
    v, vt = rows(p + "attn_v.weight")
    assert qt == kt == vt, (qt, kt, vt)
    add(p + "attn_qkv.weight", np.concatenate([unpermute(q, heads), unpermute(k, kv_heads), v]), qt)
    x, ot = rows(p + "attn_output.weight")
    add(p + "attn_output.weight", x, ot)
    g, gt = rows(p + "ffn_gate.weight")
    u, ut = rows(p + "ffn_up.weight")
    assert gt == ut
    add(p + "ffn_up.weight", np.concatenate([g, u]), gt)
    d, dt = rows(p + "ffn_down.weight")
    add(p + "ffn_down.weight", d, dt)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", out)
