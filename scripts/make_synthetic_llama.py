#!/usr/bin/env python3
"""Write a synthetic Llama-shaped Hugging Face checkpoint: config.json, bf16 safetensors shards
(about 5 GB each) with model.safetensors.index.json, a word-level tokenizer ("<t0>" .. "<tN>",
so that transformers and the reference can load the directory) and a calibration token-id file.

The weights are RANDOM (uniform, variance 1/fan_in for the projections, norms near 1): the
checkpoint measures time and memory at a real model's shape, never accuracy. The default shape
is Llama-3-8B's (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads, vocab 128256,
untied LM head, rope_theta 500000). Tensors are generated on the GPU when there is one (seeded:
the same checkpoint every time) and written one shard at a time.

usage: make_synthetic_llama.py OUT_DIR [--layers 32] [--hidden 4096] [--intermediate 14336]
       [--heads 32] [--kv-heads 8] [--head-dim HIDDEN/HEADS] [--vocab 128256] [--tokens 262144] [--seed 0]
       [--experts N --top-k K --expert-intermediate I]
With --experts, a Qwen3-MoE checkpoint (qwen3_moe: q/k norms, every layer's MLP N routed SwiGLU
experts of intermediate I, softmax top-K routing renormalized, experts stored one by one as the
hub's Qwen3-30B-A3B stores them); Qwen3-30B-A3B's shape is --hidden 2048 --heads 32 --kv-heads 4
--head-dim 128 --experts 128 --top-k 8 --expert-intermediate 768 --vocab 151936.
OUT_DIR/calib.tokens holds --tokens random token ids (one per line), the calibration both
autoround and the reference read (scripts/synthetic-8b.sh).
"""
import argparse
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

SHARD_BYTES = 5 * 1000**3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=0)
    p.add_argument("--experts", type=int, default=0)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--expert-intermediate", type=int, default=768)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--tokens", type=int, default=262144)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(a.seed)
    h, i, hd = a.hidden, a.intermediate, a.head_dim or a.hidden // a.heads
    moe = a.experts > 0

    def uniform(shape, bound):
        return ((torch.rand(shape, generator=gen, device=device) * 2 - 1) * bound).to(torch.bfloat16).cpu()

    def linear(rows, cols):
        return uniform((rows, cols), math.sqrt(3.0 / cols))

    def norm(n):
        return (1 + uniform((n,), 0.1).float()).to(torch.bfloat16)

    def tensors():
        yield "model.embed_tokens.weight", uniform((a.vocab, h), 0.05)
        for b in range(a.layers):
            q = f"model.layers.{b}."
            yield q + "input_layernorm.weight", norm(h)
            yield q + "self_attn.q_proj.weight", linear(a.heads * hd, h)
            yield q + "self_attn.k_proj.weight", linear(a.kv_heads * hd, h)
            yield q + "self_attn.v_proj.weight", linear(a.kv_heads * hd, h)
            yield q + "self_attn.o_proj.weight", linear(h, a.heads * hd)
            if moe:
                yield q + "self_attn.q_norm.weight", norm(hd)
                yield q + "self_attn.k_norm.weight", norm(hd)
            yield q + "post_attention_layernorm.weight", norm(h)
            if not moe:
                yield q + "mlp.gate_proj.weight", linear(i, h)
                yield q + "mlp.up_proj.weight", linear(i, h)
                yield q + "mlp.down_proj.weight", linear(h, i)
                continue
            yield q + "mlp.gate.weight", linear(a.experts, h)
            ei = a.expert_intermediate
            for e in range(a.experts):
                yield q + f"mlp.experts.{e}.gate_proj.weight", linear(ei, h)
                yield q + f"mlp.experts.{e}.up_proj.weight", linear(ei, h)
                yield q + f"mlp.experts.{e}.down_proj.weight", linear(h, ei)
        yield "model.norm.weight", norm(h)
        yield "lm_head.weight", linear(a.vocab, h)

    # shards are named once their count is known: write as model-k.tmp, rename at the end
    shards, current, size, total = [], {}, 0, 0
    for name, t in tensors():
        if current and size + t.numel() * 2 > SHARD_BYTES:
            shards.append(list(current))
            save_file(current, str(out / f"shard-{len(shards)}.tmp"), metadata={"format": "pt"})
            current, size = {}, 0
        current[name] = t.contiguous()
        size += t.numel() * 2
        total += t.numel() * 2
    shards.append(list(current))
    save_file(current, str(out / f"shard-{len(shards)}.tmp"), metadata={"format": "pt"})
    weight_map = {}
    for k, names in enumerate(shards, 1):
        file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        (out / f"shard-{k}.tmp").rename(out / file)
        weight_map.update({n: file for n in names})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
        "intermediate_size": i, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads, "head_dim": hd, "vocab_size": a.vocab,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False, "mlp_bias": False,
    }
    if moe:
        config.update({
            "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6, "num_experts": a.experts, "num_experts_per_tok": a.top_k,
            "moe_intermediate_size": a.expert_intermediate, "norm_topk_prob": True, "decoder_sparse_step": 1,
            "mlp_only_layers": [], "router_aux_loss_coef": 0.001, "output_router_logits": False,
            "max_position_embeddings": 40960,
        })
        del config["mlp_bias"]
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    # a word-level tokenizer "<t0>".."<tN>": the reference wants one; the calibration is token ids anyway
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({f"<t{k}>": k for k in range(a.vocab)}, unk_token="<t0>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<t0>", "bos_token": "<t1>", "eos_token": "<t2>",
        "model_max_length": 8192}, indent=2) + "\n")
    ids = torch.randint(3, a.vocab, (a.tokens,), generator=torch.Generator().manual_seed(a.seed + 1))
    (out / "calib.tokens").write_text("\n".join(str(int(t)) for t in ids) + "\n")
    params = total // 2
    print(f"{out}: {a.layers} layers, {params / 1e9:.2f} B parameters, {total / 1e9:.1f} GB bf16 in {len(shards)} shards")


if __name__ == "__main__":
    main()
