#!/usr/bin/env python3
"""Write a tiny random Qwen3-MoE Hugging Face directory (config.json, model.safetensors in float32;
2 layers, hidden 32, 4 experts, top-2) and OUT/text.tokens (2048 random token ids): what
tests/cli_moe_test.sh evaluates and tries to quantize. Standard library only; seeded.

usage: make_tiny_moe.py OUT_DIR
"""
import json
import os
import random
import struct
import sys


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    random.seed(0)
    H, I, E, V, L, heads, kv, hd = 32, 32, 4, 64, 2, 4, 2, 8
    tensors = {}

    def add(name, shape, scale=0.2, const=None):
        n = 1
        for x in shape:
            n *= x
        values = [const if const is not None else random.gauss(0, scale) for _ in range(n)]
        tensors[name] = (shape, struct.pack("<%df" % n, *values))

    add("model.embed_tokens.weight", [V, H], 0.5)
    add("lm_head.weight", [V, H], 0.3)
    add("model.norm.weight", [H], const=1.0)
    for b in range(L):
        p = f"model.layers.{b}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            add(p + norm + ".weight", [H], const=1.0)
        add(p + "self_attn.q_norm.weight", [hd], const=1.0)
        add(p + "self_attn.k_norm.weight", [hd], const=1.0)
        add(p + "self_attn.q_proj.weight", [heads * hd, H])
        add(p + "self_attn.k_proj.weight", [kv * hd, H])
        add(p + "self_attn.v_proj.weight", [kv * hd, H])
        add(p + "self_attn.o_proj.weight", [H, heads * hd])
        add(p + "mlp.gate.weight", [E, H], 0.5)
        for e in range(E):
            q = p + f"mlp.experts.{e}."
            add(q + "gate_proj.weight", [I, H])
            add(q + "up_proj.weight", [I, H])
            add(q + "down_proj.weight", [H, I])
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        shape, data = tensors[name]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    config = {"model_type": "qwen3_moe", "hidden_size": H, "intermediate_size": 64, "num_attention_heads": heads,
              "num_key_value_heads": kv, "head_dim": hd, "num_hidden_layers": L, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "vocab_size": V, "tie_word_embeddings": False, "num_experts": E, "num_experts_per_tok": 2,
              "moe_intermediate_size": I, "norm_topk_prob": True}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(out, "text.tokens"), "w") as f:
        f.write("\n".join(str(random.randrange(V)) for _ in range(2048)))


if __name__ == "__main__":
    main()
