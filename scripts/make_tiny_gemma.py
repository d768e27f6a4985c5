#!/usr/bin/env python3
"""Write a tiny random Gemma 3 Hugging Face directory (gemma3_text: config.json, model.safetensors in
float32; 3 layers [sliding, sliding, full] with a 16-token window, hidden 64, GeGLU, sandwich norms
stored as w of (1 + w), q/k norms, tied embeddings) and OUT/text.tokens (2048 token ids from a
seeded order-1 Markov chain, so that the model has something to fit): what tests/cli_gemma_test.sh
evaluates and quantizes. Standard library only; seeded. (The logits of transformers' own Gemma
classes are checked by tests/test_family_logits.cpp; this directory only exercises the CLI.)

usage: make_tiny_gemma.py OUT_DIR
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
    H, I, V, L, heads, kv, hd = 64, 128, 64, 3, 4, 2, 16
    tensors = {}

    def add(name, shape, scale=0.2, const=None):
        n = 1
        for x in shape:
            n *= x
        values = [const if const is not None else random.gauss(0, scale) for _ in range(n)]
        tensors[name] = (shape, struct.pack("<%df" % n, *values))

    add("model.embed_tokens.weight", [V, H], 0.1)
    add("model.norm.weight", [H], 0.1)  # Gemma's norms multiply by (1 + w)
    for b in range(L):
        p = f"model.layers.{b}."
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"):
            add(p + norm + ".weight", [H], 0.1)
        add(p + "self_attn.q_norm.weight", [hd], 0.1)
        add(p + "self_attn.k_norm.weight", [hd], 0.1)
        add(p + "self_attn.q_proj.weight", [heads * hd, H])
        add(p + "self_attn.k_proj.weight", [kv * hd, H])
        add(p + "self_attn.v_proj.weight", [kv * hd, H])
        add(p + "self_attn.o_proj.weight", [H, heads * hd])
        add(p + "mlp.gate_proj.weight", [I, H])
        add(p + "mlp.up_proj.weight", [I, H])
        add(p + "mlp.down_proj.weight", [H, I])
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
    config = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": H, "intermediate_size": I,
              "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd, "num_hidden_layers": L,
              "rms_norm_eps": 1e-6, "vocab_size": V, "tie_word_embeddings": True, "hidden_activation": "gelu_pytorch_tanh",
              "query_pre_attn_scalar": hd, "sliding_window": 16,
              "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
              "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                  "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
              "final_logit_softcapping": None, "attn_logit_softcapping": None}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f)
    # an order-1 chain: each token has 3 likely successors
    successors = [[random.randrange(V) for _ in range(3)] for _ in range(V)]
    token, ids = 0, []
    for _ in range(2048):
        token = random.choice(successors[token]) if random.random() < 0.9 else random.randrange(V)
        ids.append(token)
    with open(os.path.join(out, "text.tokens"), "w") as f:
        f.write("\n".join(str(t) for t in ids))


if __name__ == "__main__":
    main()
