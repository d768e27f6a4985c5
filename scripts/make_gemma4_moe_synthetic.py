#!/usr/bin/env python3
"""A Gemma 4 26B-A4B-like Hugging Face checkpoint with RANDOM weights (time and memory only, never
accuracy), saved by transformers itself in bfloat16, and a calibration file of random token ids.
The shape is ASSUMED from others' code, not checked against the released config: hidden 2816,
dense MLP 2112, 128 GeGLU experts of 704, top 8, 16 heads of 256 with 8 KV heads on sliding layers
(window 1024), full layers with 512-wide heads, 2 KV heads and keys as values, vocab 262144.
LAYERS layers alternate [sliding, full]. Needs torch (a GPU, when there is one) and transformers 5.x.
usage: make_gemma4_moe_synthetic.py OUT_DIR [LAYERS=2] [TOKENS=262144]"""
import sys

import torch
import transformers as tf

out = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 128 * 2048
config = tf.Gemma4TextConfig(
    vocab_size=262144, hidden_size=2816, intermediate_size=2112, num_hidden_layers=layers, num_attention_heads=16,
    num_key_value_heads=8, head_dim=256, global_head_dim=512, num_global_key_value_heads=2, attention_k_eq_v=True,
    hidden_size_per_layer_input=0, sliding_window=1024, layer_types=["sliding_attention", "full_attention"] * (layers // 2) + ["sliding_attention"] * (layers % 2),
    enable_moe_block=True, num_experts=128, top_k_experts=8, moe_intermediate_size=704, tie_word_embeddings=True,
    hidden_activation="gelu_pytorch_tanh",
    rope_parameters={"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
torch.manual_seed(0)
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = tf.Gemma4ForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(out)
ids = torch.randint(0, config.vocab_size, (tokens,), generator=torch.Generator().manual_seed(1))
with open(out + "/calib.tokens", "w") as f:
    f.write("\n".join(str(t) for t in ids.tolist()))
print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, {layers} layers, {tokens} calibration tokens")
