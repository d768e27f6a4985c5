#!/usr/bin/env python3
"""Write tests/fixtures/vlm/<family>/: a tiny random vision-language checkpoint per family, saved
by transformers itself (save_pretrained, float32: its language model under the names transformers
writes, vision tower and projector beside it), and the logits of the whole model on a text-only
input of 48 tokens (what tests/test_vlm.cpp compares our loader's language model against).

Families (text config: hidden 64, 2 layers, 4 heads, 2 KV heads, vocab 128; vision tower: 1
layer, hidden 32, 28 × 28 images of 14 × 14 patches):
  gemma3      Gemma3ForConditionalGeneration: gemma3_text (layers [sliding, full], window 8,
              query_pre_attn_scalar 24, sandwich norms, tied), SigLIP tower, mm projector
  gemma4      Gemma4ForConditionalGeneration: gemma4_text (layers [sliding, full], window 8, the full
              layer 32 wide with 1 KV head and keys as values, proportional RoPE, no per-layer
              embeddings, tied), its vision tower (no audio tower), embed_vision projector
  qwen2_5_vl  Qwen2_5_VLForConditionalGeneration: qwen2_5_vl_text (q/k/v biases, mrope
              sections), its own vision blocks and merger, untied LM head
  mistral3    Mistral3ForConditionalGeneration: mistral text, Pixtral tower, patch merger, untied
  llava       LlavaForConditionalGeneration: llama text, CLIP tower, 2-layer projector, untied
Image token ids are 0 (in the vocabulary; the text tokens are 1..127), Gemma 3's its default.
Every 1-D parameter is moved by N(0, 0.2) (norms, biases), initializer_range 0.1.
Each directory: config.json, model.safetensors, logits.safetensors (tokens int32 [48], logits
float32 [48, 128]), text.tokens. Needs torch, transformers 5.x and safetensors.
usage: make_vlm_fixtures.py OUT_DIR [FAMILY ...]
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

SEED = 4321
TOKENS = 48
VOCAB = 128
TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, initializer_range=0.1)


def families():
    import transformers as tf
    return {
        "gemma3": lambda: (tf.Gemma3ForConditionalGeneration, tf.Gemma3Config(
            text_config=dict(TEXT, model_type="gemma3_text", head_dim=16, query_pre_attn_scalar=24, sliding_window=8,
                             layer_types=["sliding_attention", "full_attention"],
                             rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 20000.0},
                                              "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}}),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                               num_attention_heads=2, image_size=28, patch_size=14),
            mm_tokens_per_image=4, initializer_range=0.1)),
        "gemma4": lambda: (tf.Gemma4ForConditionalGeneration, tf.Gemma4Config(
            text_config=dict(TEXT, model_type="gemma4_text", head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
                             attention_k_eq_v=True, sliding_window=8, hidden_size_per_layer_input=0,
                             layer_types=["sliding_attention", "full_attention"],
                             rope_parameters={"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                                 "rope_theta": 20000.0},
                                              "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}}),
            vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                               head_dim=16, patch_size=14, position_embedding_size=64),
            audio_config=None, initializer_range=0.1)),
        "qwen2_5_vl": lambda: (tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLConfig(
            text_config=dict(TEXT, model_type="qwen2_5_vl_text",
                             rope_parameters={"rope_type": "default", "type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 20000.0}),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64, patch_size=14,
                               spatial_merge_size=2, temporal_patch_size=2, window_size=28, fullatt_block_indexes=[0]),
            tie_word_embeddings=False)),
        "mistral3": lambda: (tf.Mistral3ForConditionalGeneration, tf.Mistral3Config(
            text_config=dict(TEXT, model_type="mistral", head_dim=16, sliding_window=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 20000.0}),
            vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                               image_size=28, patch_size=14, head_dim=16),
            tie_word_embeddings=False, spatial_merge_size=2, image_token_index=0)),
        "llava": lambda: (tf.LlavaForConditionalGeneration, tf.LlavaConfig(
            text_config=dict(TEXT, model_type="llama", rope_parameters={"rope_type": "default", "rope_theta": 20000.0}),
            vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32),
            tie_word_embeddings=False, image_seq_length=4, image_token_index=0)),
    }


def main(out_root, only):
    g = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(1, VOCAB, (TOKENS,), generator=g).tolist()
    import transformers
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for family, make in families().items():
        if only and family not in only:
            continue
        torch.manual_seed(SEED)
        model_class, config = make()
        config._attn_implementation = "eager"
        model = model_class(config).float().eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(0.2 * torch.randn_like(p))
        directory = os.path.join(out_root, family)
        os.makedirs(directory, exist_ok=True)
        for f in os.listdir(directory):
            os.remove(os.path.join(directory, f))
        model.save_pretrained(directory)
        for f in os.listdir(directory):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(directory, f))
        back = model_class.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32).eval()
        with torch.no_grad():
            logits = back(input_ids=torch.tensor([tokens])).logits[0].float()
        from safetensors import safe_open
        with safe_open(os.path.join(directory, "model.safetensors"), "pt") as f:
            names = sorted(f.keys())
        size = os.path.getsize(os.path.join(directory, "model.safetensors"))
        print(f"== {family}: {len(names)} tensors, {size} bytes; e.g. {[n for n in names if 'layers.0.self_attn.q' in n]}; "
              f"not the language model: {len([n for n in names if 'vision' in n or 'visual' in n or 'projector' in n])}")
        save_file({"tokens": torch.tensor(tokens, dtype=torch.int32), "logits": logits.contiguous()},
                  os.path.join(directory, "logits.safetensors"),
                  metadata={"reference": f"transformers {transformers.__version__} {model_class.__name__}, float32, eager, CPU, text only"})
        with open(os.path.join(directory, "text.tokens"), "w") as f:
            f.write(" ".join(str(t) for t in tokens) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
