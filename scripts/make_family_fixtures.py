#!/usr/bin/env python3
"""Write tests/fixtures/families/<family>/: a small random Hugging Face checkpoint per family, saved by transformers itself, and that model's logits on a fixed token
sequence, computed by transformers (what tests/test_family_logits.cpp compares our loader and
forward pass against).

Families: qwen3_moe (Qwen3MoeForCausalLM: 8 experts, top 2, norm_topk_prob true, q/k norms),
qwen2_moe (Qwen2MoeForCausalLM: 4 experts, top 2, norm_topk_prob false, q/k/v biases, a shared
expert of intermediate 48 scaled by sigmoid(shared_expert_gate)), mixtral (MixtralForCausalLM:
8 experts, top 2, always renormalized). All: hidden 64, 2 layers, both MoE (decoder_sparse_step
1, no mlp_only_layers), 4 heads, 2 KV heads, head_dim 16, expert intermediate 32, vocab 128,
max positions 256, RoPE theta 20000 (neither the families' default nor the loaders' fallback of
10000, so a theta that is not read shows), rms_norm_eps 1e-6, untied LM head, float32.
Weights: transformers' own initialization under torch.manual_seed(SEED) with initializer_range
0.1 (so routing and logits are far from uniform), then every 1-D parameter (RMSNorm weights, the
q/k/v biases) moved by N(0, 0.2) so that none is trivially one or zero.

Each directory holds:
  config.json, model.safetensors  what save_pretrained wrote (float32; generation_config.json
                                  removed). transformers 5.17's config.json holds the RoPE theta
                                  only as rope_parameters.rope_theta (no top-level rope_theta) and
                                  qwen3_moe's expert count as num_local_experts (qwen2_moe keeps
                                  num_experts; qwen2_moe adds qkv_bias true). It saves the
                                  experts in the original per-expert layout, not its in-memory
                                  fused one: model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight
                                  (qwen3_moe, qwen2_moe; qwen2_moe also mlp.shared_expert.*_proj.weight
                                  and mlp.shared_expert_gate.weight [1, 64]) and
                                  model.layers.N.block_sparse_moe.experts.E.{w1,w3,w2}.weight with
                                  block_sparse_moe.gate.weight (mixtral); the router is
                                  mlp.gate.weight [experts, 64]. The script prints every saved
                                  name and shape.
  logits.safetensors              tokens (int32 [48], seeded), logits (float32 [48, 128]) of the
                                  model read back from the directory (eager attention, float32, CPU),
                                  hidden (float32 [layers + 1, 48, 64]: output_hidden_states, for
                                  diagnosis only); metadata: the smallest router margin (the
                                  top-k-th minus the next router logit over all tokens and MoE layers)
                                  and the smallest top-1/top-2 logit gap, so a near tie is visible.
                                  gemma4_text, gemma4_moe, gemma4_e2b also logits_f64: the same model computed in float64
                                  (rounded to float32), the reference its test compares with, within
                                  twice transformers' own float32 error.
  text.tokens                     the same 48 ids, whitespace-separated.

Dense families with Gemma's block (the settings each exercises, chosen away from the defaults so
that a setting that is not read shows):
  gemma3_text  Gemma3ForCausalLM: hidden 72 (√72 embedding scale; heads × head_dim = 64 ≠ hidden),
               4 layers [sliding, sliding, full, sliding] with sliding_window 8 (of 48 tokens),
               query_pre_attn_scalar 24, full layers' RoPE linear ×2 on theta 20000, sliding
               layers' theta 5000, q/k norms, sandwich norms (1 + w), GeGLU, tied embeddings,
               final_logit_softcapping 20.
  gemma4_text  Gemma4ForCausalLM (Gemma 4 31B's dense layout): hidden 64 (every linear a multiple of
               32 on both sides, so that the CLI test tunes them all), 4 layers [sliding, full,
               sliding, full], window 8; sliding layers head_dim 16 with 2 KV heads and RoPE theta 5000;
               full layers global_head_dim 32 with num_global_key_value_heads 1 and attention_k_eq_v
               (no v_proj: the values are k_proj's output), proportional RoPE on theta 20000 with
               partial_rotary_factor 0.25 (transformers also divides by a 'factor', which it
               flags as unrecognized and llama.cpp's converter drops: none here); v_norm, q/k norms and sandwich norms (w, not
               1 + w), attention scale 1, layer_scalar buffers moved to N(1, 0.4), no per-layer
               embeddings (hidden_size_per_layer_input 0), final_logit_softcapping 20, tied.
  gemma4_moe   Gemma4ForCausalLM with enable_moe_block (Gemma 4 26B-A4B's layout): gemma4_text's model
               above, plus in every layer 8 experts (top_k_experts 2, moe_intermediate_size 32) beside
               the dense MLP: router.proj / router.scale / router.per_expert_scale (the two scales
               moved by N(0, 0.2) as every 1-D parameter), experts.gate_up_proj [8, 64, 64] and
               experts.down_proj [8, 64, 32] (transformers saves them fused), pre_feedforward_layernorm_2,
               post_feedforward_layernorm_1 / _2; its router margin is taken on router.proj's input.
  gemma4_e2b   Gemma4ForCausalLM with Gemma 4 E2B's pieces: 6 layers [sliding, full] × 3, window 8,
               global_head_dim 32 (full layers' own k_proj / v_proj, 2 KV heads: no attention_k_eq_v),
               per-layer embeddings of 32 (hidden_size_per_layer_input; embed_tokens_per_layer [128, 6·32],
               per_layer_model_projection [192, 64], per_layer_projection_norm, and per layer
               per_layer_input_gate [32, 64], per_layer_projection [64, 32], post_per_layer_input_norm),
               num_kv_shared_layers 2 (layers 4 and 5 have no k/v projections and attend with layers 2's
               and 3's keys and values) and use_double_wide_mlp (their MLP 192 wide), layer_scalar moved,
               final_logit_softcapping 20, tied; also logits_f64.
  gemma2       Gemma2ForCausalLM: hidden 72, 3 layers (its default alternation: sliding, full,
               sliding), sliding_window 8, query_pre_attn_scalar 24, attn_logit_softcapping 2 and
               final_logit_softcapping 3 (small, so that tanh bends the scores), theta 20000, tied.
  phi3         Phi3ForCausalLM: fused qkv_proj and gate_up_proj, LongRoPE (short and long factors,
               original_max_position_embeddings 32 < the 48 tokens, so the long factors and the
               attention factor √(1 + ln 8 / ln 32) apply), partial_rotary_factor 0.5, every
               layer's sliding window 40, untied; logits.safetensors also holds logits_short, the
               logits of the first 32 tokens alone (LongRoPE's short factors).
(the router margin is then not defined: "none").

  gpt_oss      GptOssForCausalLM: 8 experts, top 2 (router logits + bias, softmax over the two),
               the experts' biases (2-D, zero at initialization) moved by N(0, 0.2) too,
               q/k/v/o biases, attention sinks (moved by N(0, 1.5) more, so that they matter),
               layers [sliding, full] with an 8-token window, YaRN RoPE (factor 8, original 4096,
               beta 32 / 1, truncate false: a ramp from pair 2.43 to 5.23, attention factor
               1 + 0.1 ln 8), experts' gate_up_proj × 6 so that the clamps at ±7 bind; saved as
               transformers holds it: mlp.experts.gate_up_proj [E, H, 2I] (gate/up interleaved) etc.
  gpt_oss_mxfp4  the same model with its experts' two weights in MXFP4 as the released checkpoints
               store them (…_blocks U8 [E, out, in/32, 16], …_scales U8 [E, out, in/32], written by
               this script: scale = floor(log2 max|x|) − 2 + 127, codes the nearest E2M1 value,
               low nibble first) and quantization_config {quant_method: mxfp4}; its logits come from
               transformers reading that directory (Mxfp4Config(dequantize=True): its own unpacking).
               Made with gpt_oss (both or neither).
  glm4_moe     Glm4MoeForCausalLM (GLM-4.5 / 4.6 / 4.7): 3 layers, the first dense (first_k_dense_replace
               1, intermediate 96), then DeepSeek-V3's MoE: 8 experts in n_group 2, topk_group 1, top 2,
               sigmoid scores, choice on score + e_score_correction_bias (a buffer, zero at
               initialization: set to N(0, 0.3) here so that it changes choices), renormalized ×
               routed_scaling_factor 2.5, one shared expert (mlp.shared_experts.*, no gate); q/k/v
               biases (attention_bias), q/k norms (use_qk_norm), partial_rotary_factor 0.5,
               num_nextn_predict_layers 0 (transformers builds no MTP layer anyway).
  deepseek_v3  DeepseekV3ForCausalLM: 3 layers, the first dense, then GLM's MoE above (8 experts, 2 groups,
               top group 1, top 2, a shared expert); multi-head latent attention: q_a_proj (q_lora_rank 32)
               → q_a_layernorm → q_b_proj, kv_a_proj_with_mqa → [latent 32 | one roped key part 32]
               → kv_a_layernorm(latent) → kv_b_proj → per head [key 8 | value 16]; 4 heads; RoPE on
               adjacent pairs (rope_interleave); YaRN factor 4 from 16 positions with mscale 1 and
               mscale_all_dim 0.8 (so both the cos/sin factor and the score scale differ from 1);
               rms_norm_eps 1e-5 (the latent norms keep transformers' built-in 1e-6).

Each directory is about 0.6 MB. Needs python3 with torch, transformers (5.x) and safetensors.
usage: make_family_fixtures.py OUT_DIR [FAMILY ...]    (e.g. tests/fixtures/families gemma3_text)
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

SEED = 1234
TOKENS = 48
VOCAB = 128
THETA = 20000.0

COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
              initializer_range=0.1, num_experts_per_tok=2, hidden_act="silu", attention_dropout=0.0)


def families():
    import transformers as tf
    return {
        "qwen3_moe": (tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM,
                      dict(num_experts=8, moe_intermediate_size=32, intermediate_size=96, norm_topk_prob=True,
                           decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False, attention_bias=False)),
        "qwen2_moe": (tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM,
                      dict(num_experts=4, moe_intermediate_size=32, intermediate_size=96, shared_expert_intermediate_size=48,
                           norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False)),
        "mixtral": (tf.MixtralConfig, tf.MixtralForCausalLM,
                    dict(num_local_experts=8, intermediate_size=32, sliding_window=None)),
        "gemma3_text": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
                        dict(hidden_size=72, intermediate_size=96, num_hidden_layers=4, tie_word_embeddings=True,
                             hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, sliding_window=8,
                             layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                             final_logit_softcapping=20.0, attn_logit_softcapping=None,
                             rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": THETA},
                                              "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}})),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM,
                 dict(intermediate_size=96, sliding_window=40, max_position_embeddings=256, original_max_position_embeddings=32,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      rope_parameters={"rope_type": "longrope", "rope_theta": THETA, "partial_rotary_factor": 0.5,
                                       "original_max_position_embeddings": 32,
                                       "short_factor": [1.0, 1.3, 2.1, 3.7], "long_factor": [1.1, 2.9, 5.3, 9.7]})),
        "gpt_oss": (tf.GptOssConfig, tf.GptOssForCausalLM,
                    dict(num_local_experts=8, intermediate_size=32, attention_bias=True, sliding_window=8,
                         layer_types=["sliding_attention", "full_attention"], max_position_embeddings=32768,
                         rope_parameters={"rope_type": "yarn", "rope_theta": THETA, "factor": 8.0, "beta_fast": 32.0,
                                          "beta_slow": 1.0, "original_max_position_embeddings": 4096, "truncate": False})),
        "glm4_moe": (tf.Glm4MoeConfig, tf.Glm4MoeForCausalLM,
                     dict(num_hidden_layers=3, n_routed_experts=8, moe_intermediate_size=32, intermediate_size=96,
                          n_shared_experts=1, n_group=2, topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.5,
                          norm_topk_prob=True, use_qk_norm=True, attention_bias=True, num_nextn_predict_layers=0,
                          partial_rotary_factor=0.5)),
        "deepseek_v3": (tf.DeepseekV3Config, tf.DeepseekV3ForCausalLM,
                        dict(num_hidden_layers=3, num_key_value_heads=4, head_dim=None, rms_norm_eps=1e-5,
                             q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=8, qk_rope_head_dim=32, v_head_dim=16,
                             n_routed_experts=8, moe_intermediate_size=32, intermediate_size=96, n_shared_experts=1,
                             n_group=2, topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.5,
                             norm_topk_prob=True, rope_interleave=True, attention_bias=False, num_mtp_layers=0,
                             scoring_func="sigmoid", topk_method="noaux_tc",  # as the released config.json (llama.cpp reads scoring_func)
                             rope_parameters={"rope_type": "yarn", "rope_theta": THETA, "factor": 4.0, "beta_fast": 32.0,
                                              "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8,
                                              "original_max_position_embeddings": 16})),
        "gemma4_text": (tf.Gemma4TextConfig, tf.Gemma4ForCausalLM,
                        dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, tie_word_embeddings=True,
                             hidden_activation="gelu_pytorch_tanh", sliding_window=8, global_head_dim=32,
                             num_global_key_value_heads=1, attention_k_eq_v=True, hidden_size_per_layer_input=0,
                             layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
                             final_logit_softcapping=20.0,
                             rope_parameters={"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                                 "rope_theta": THETA},
                                              "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}})),
        "gemma4_moe": (tf.Gemma4TextConfig, tf.Gemma4ForCausalLM,
                       dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, tie_word_embeddings=True,
                            hidden_activation="gelu_pytorch_tanh", sliding_window=8, global_head_dim=32,
                            num_global_key_value_heads=1, attention_k_eq_v=True, hidden_size_per_layer_input=0,
                            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
                            final_logit_softcapping=20.0, enable_moe_block=True, num_experts=8, top_k_experts=2,
                            moe_intermediate_size=32,
                            rope_parameters={"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                                "rope_theta": THETA},
                                             "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}})),
        "gemma4_e2b": (tf.Gemma4TextConfig, tf.Gemma4ForCausalLM,
                       dict(hidden_size=64, intermediate_size=96, num_hidden_layers=6, tie_word_embeddings=True,
                            hidden_activation="gelu_pytorch_tanh", sliding_window=8, global_head_dim=32,
                            attention_k_eq_v=False, hidden_size_per_layer_input=32, vocab_size_per_layer_input=VOCAB,
                            num_kv_shared_layers=2, use_double_wide_mlp=True,
                            layer_types=["sliding_attention", "full_attention"] * 3,
                            final_logit_softcapping=20.0,
                            rope_parameters={"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                                "rope_theta": THETA},
                                             "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}})),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM,
                   dict(hidden_size=72, intermediate_size=96, num_hidden_layers=3, tie_word_embeddings=True,
                        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, sliding_window=8,
                        attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
    }


def make_config(config_class, extra):
    kwargs = {k: v for k, v in dict(COMMON, **extra).items() if v is not None}  # None: the family derives it (DeepSeek's head_dim)
    if "rope_parameters" in kwargs:  # per layer type (Gemma 3)
        return config_class(**kwargs)
    try:  # transformers 5: RoPE settings live in rope_parameters
        config = config_class(rope_parameters={"rope_type": "default", "rope_theta": THETA}, **kwargs)
    except TypeError:
        config = config_class(rope_theta=THETA, **kwargs)
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict):
        assert rope.get("rope_theta") == THETA, rope
    else:
        config.rope_theta = THETA
    return config


def build(model_class, config):
    try:
        return model_class._from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        return model_class(config)


def moe_blocks(model):
    """(layer index, MoE module, router weight [experts, hidden], top_k) of every sparse layer."""
    out = []
    for i, layer in enumerate(model.model.layers):
        router = getattr(layer, "router", None)
        if router is not None and hasattr(router, "proj"):  # Gemma 4: beside the MLP, routing on an input of its own
            out.append((i, router.proj, router.proj.weight, None, model.config.top_k_experts))
            continue
        block = getattr(layer, "block_sparse_moe", None) or getattr(layer, "mlp", None)
        gate = getattr(block, "gate", None) or getattr(block, "router", None)  # GPT-OSS: mlp.router, with a bias
        weight = getattr(gate, "weight", None)
        experts = getattr(model.config, "num_experts", None) or getattr(model.config, "num_local_experts", None)
        if weight is not None and tuple(weight.shape) == (experts, model.config.hidden_size):
            out.append((i, block, weight, getattr(gate, "bias", None), model.config.num_experts_per_tok))
    return out


def logits_of(model, tokens):
    """Logits [T, vocab], hidden states [layers + 1, T, hidden], smallest router margin."""
    margins = []
    hooks = []
    for _, block, weight, bias, k in moe_blocks(model):
        def pre(module, args, kwargs, weight=weight, bias=bias, k=k):
            x = (args[0] if args else kwargs["hidden_states"]).reshape(-1, weight.shape[1]).double()
            scores = x @ weight.double().T + (bias.double() if bias is not None else 0)
            r = torch.sort(scores, dim=-1, descending=True).values
            margins.append(float((r[:, k - 1] - r[:, k]).min()))
        hooks.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    with torch.no_grad():
        out = model(torch.tensor([tokens]), output_hidden_states=True)
    for h in hooks:
        h.remove()
    hidden = torch.stack([h[0] for h in out.hidden_states]).float()
    return out.logits[0].float(), hidden, min(margins) if margins else None


def main(out_root, only):
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(0, VOCAB, (TOKENS,), generator=g).tolist()
    import transformers
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for family, (config_class, model_class, extra) in families().items():
        if only and family not in only:
            continue
        torch.manual_seed(SEED)
        config = make_config(config_class, extra)
        model = build(model_class, config).float().eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(0.2 * torch.randn_like(p))
                if family == "gpt_oss" and name.endswith("proj_bias"):  # the experts' biases are 2-D ([E, 2I], [E, H])
                    p.add_(0.2 * torch.randn_like(p))
                if family == "gpt_oss" and name.endswith("sinks"):
                    p.add_(1.5 * torch.randn_like(p))
                if family == "gpt_oss" and name.endswith("gate_up_proj"):
                    p.mul_(6.0)
            for name, b in model.named_buffers():  # GLM: the routing choice's bias (a buffer, zero at initialization)
                if name.endswith("e_score_correction_bias"):
                    b.copy_(0.3 * torch.randn_like(b))
                if name.endswith("layer_scalar"):  # Gemma 4's output scale per layer (a stored buffer, one at initialization)
                    b.copy_(1.0 + 0.4 * torch.randn_like(b))
        directory = os.path.join(out_root, family)
        os.makedirs(directory, exist_ok=True)
        for f in os.listdir(directory):  # (model.gguf is scripts/convert_family_gguf.py's: rerun it when the weights change)
            if f != "model.gguf":
                os.remove(os.path.join(directory, f))
        model.save_pretrained(directory)
        for f in os.listdir(directory):
            if f not in ("config.json", "model.safetensors", "model.gguf"):
                os.remove(os.path.join(directory, f))
        assert os.path.exists(os.path.join(directory, "model.safetensors")), os.listdir(directory)
        with safe_open(os.path.join(directory, "model.safetensors"), "pt") as f:
            names = sorted(f.keys())
            print(f"== {family}: {len(names)} tensors")
            for n in names:
                t = f.get_slice(n)
                print(f"  {n} {t.get_dtype()} {list(t.get_shape())}")
        with open(os.path.join(directory, "config.json")) as f:
            print("  config.json:", json.dumps(json.load(f), sort_keys=True))
        # the reference logits come from the model read back from the directory (what our loader reads)
        back = model_class.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32).eval()
        logits, hidden, margin = logits_of(back, tokens)
        logits_mem, _, _ = logits_of(model, tokens)
        top2 = torch.topk(logits, 2, dim=-1).values
        gap = float((top2[:, 0] - top2[:, 1]).min())
        margin = "none" if margin is None else f"{margin:.6g}"
        print(f"  read back vs in memory: max |logit diff| {float((logits - logits_mem).abs().max()):.3g};"
              f" max |logit| {float(logits.abs().max()):.4g}; smallest router margin {margin};"
              f" smallest top-1/top-2 logit gap {gap:.4g}")
        tensors = {"tokens": torch.tensor(tokens, dtype=torch.int32), "logits": logits.contiguous(), "hidden": hidden.contiguous()}
        if family in ("gemma4_text", "gemma4_moe", "gemma4_e2b"):  # its scores are not scaled (q/k norms, scale 1): float32 sums part by ~1e-5 of the logits
            # (experts: transformers' per-expert loop; its default grouped_mm has no float64)
            extra = {"experts_implementation": "eager"} if family == "gemma4_moe" else {}
            back64 = model_class.from_pretrained(directory, attn_implementation="eager", dtype=torch.float64, **extra).eval()
            with torch.no_grad():
                tensors["logits_f64"] = back64(torch.tensor([tokens])).logits[0].float().contiguous()
            print(f"  float32 vs float64 (transformers): max |logit diff| {float((logits - tensors['logits_f64']).abs().max()):.3g}")
        if family == "phi3":  # LongRoPE's short factors: the first 32 tokens alone (not beyond original_max_position_embeddings)
            tensors["logits_short"] = logits_of(back, tokens[:32])[0].contiguous()
        if family == "gpt_oss":  # the same checkpoint with YaRN's correction range rounded (llama.cpp's YaRN)
            tensors["logits_truncate"] = truncated_logits(model_class, directory, tokens).contiguous()
        save_file(tensors,
                  os.path.join(directory, "logits.safetensors"),
                  metadata={"reference": f"transformers {transformers.__version__} {model_class.__name__}, float32, eager, CPU",
                            "seed": str(SEED), "router_margin": margin, "top2_gap": f"{gap:.6g}"})
        with open(os.path.join(directory, "text.tokens"), "w") as f:
            f.write(" ".join(str(t) for t in tokens) + "\n")
        if family == "gpt_oss":
            write_mxfp4_twin(directory, os.path.join(out_root, "gpt_oss_mxfp4"), tokens)


E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def mxfp4_pack(w):
    """[E, out, in] float -> blocks U8 [E, out, in/32, 16], scales U8 [E, out, in/32] (low nibble: even element)."""
    E, rows, cols = w.shape
    g = w.reshape(E, rows, cols // 32, 32).double()
    amax = g.abs().amax(-1)
    e = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-30))) - 2 + 127, torch.zeros_like(amax)).clamp(0, 254)
    unit = torch.pow(2.0, e - 127).unsqueeze(-1)
    table = torch.tensor(E2M1, dtype=torch.float64)
    codes = (g / unit).unsqueeze(-1).sub(table).abs().argmin(-1)  # the nearest E2M1 value (ties: the lower code)
    codes = codes.to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), e.to(torch.uint8).contiguous()


def truncated_logits(model_class, directory, tokens, **kwargs):
    """The logits of the checkpoint in `directory` read with rope_parameters.truncate = true: YaRN's
    correction range rounded to whole pairs, as llama.cpp computes every YaRN model (GPT-OSS's
    GGUF files read to these)."""
    import transformers
    config = transformers.AutoConfig.from_pretrained(directory)
    config.rope_parameters = dict(config.rope_parameters, truncate=True)
    back = model_class.from_pretrained(directory, config=config, attn_implementation="eager", dtype=torch.float32, **kwargs).float().eval()
    return logits_of(back, tokens)[0]


def write_mxfp4_twin(float_dir, directory, tokens):
    import transformers
    from safetensors.torch import load_file
    os.makedirs(directory, exist_ok=True)
    for f in os.listdir(directory):
        if f != "model.gguf":
            os.remove(os.path.join(directory, f))
    tensors = load_file(os.path.join(float_dir, "model.safetensors"))
    out = {}
    for name, t in tensors.items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            blocks, scales = mxfp4_pack(t.transpose(1, 2))  # stored as [E, out, in]
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
        else:
            out[name] = t
    save_file(out, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(float_dir, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                                      "model.embed_tokens", "lm_head"]}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    back = transformers.GptOssForCausalLM.from_pretrained(directory, quantization_config=transformers.Mxfp4Config(dequantize=True),
                                                          attn_implementation="eager", dtype=torch.float32).float().eval()
    print(f"== gpt_oss_mxfp4: experts' dtypes after loading: {back.model.layers[0].mlp.experts.gate_up_proj.dtype}")
    logits, hidden, margin = logits_of(back, tokens)
    top2 = torch.topk(logits, 2, dim=-1).values
    gap = float((top2[:, 0] - top2[:, 1]).min())
    margin = "none" if margin is None else f"{margin:.6g}"
    print(f"  max |logit| {float(logits.abs().max()):.4g}; smallest router margin {margin}; smallest top-1/top-2 logit gap {gap:.4g}")
    truncated = truncated_logits(transformers.GptOssForCausalLM, directory, tokens,
                                 quantization_config=transformers.Mxfp4Config(dequantize=True))
    save_file({"tokens": torch.tensor(tokens, dtype=torch.int32), "logits": logits.contiguous(), "hidden": hidden.contiguous(),
               "logits_truncate": truncated.contiguous()},
              os.path.join(directory, "logits.safetensors"),
              metadata={"reference": f"transformers {transformers.__version__} GptOssForCausalLM from MXFP4 (Mxfp4Config dequantize), float32, eager, CPU",
                        "seed": str(SEED), "router_margin": margin, "top2_gap": f"{gap:.6g}"})
    with open(os.path.join(directory, "text.tokens"), "w") as f:
        f.write(" ".join(str(t) for t in tokens) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
