#!/usr/bin/env python3
"""Write tests/fixtures/reference_block_parity.safetensors: what the real AutoRound (auto-round
0.16.1, torch 2.12.1, CPU, float32) does to blocks 0 and 1 of the asset model, for the
block-level differential test (tests/test_block_parity.cpp).

The reference runs as a user runs it (AutoRound(...).quantize()) on the asset model read by
transformers from the GGUF (float32, eager attention), W2G64 asym, NSAMPLES windows of SEQLEN
consecutive tokens of kjv-calib.tokens (our consecutive_windows), batch BATCH, ITERS steps,
seed 42. Hooks record, without changing anything:
  - AlgorithmComposer.compress_block: the block's fp-stream input (BLOCK.fp_input) before the
    reference frees it;
  - SignRoundQuantizer.quantize_block: the inputs it tunes on (BLOCK.q_input: the quantized
    stream), the targets (BLOCK.target: the full-precision block on the fp stream), the loss
    mask it derived (BLOCK.mask), and the tuned parameters it keeps (best step);
  - SignRoundQuantizer._get_loss: each step's backpropagated loss (BLOCK.losses, the mean MSE
    before the reference's ×1000) and sampled indices (BLOCK.indices).
Tuned parameters are stored for the first ROWS rows of every linear layer in the GGUF's row
order (transformers undoes llama.cpp's q/k row permutation; this script re-applies it):
BLOCK.LAYER.v [ROWS, in], BLOCK.LAYER.min_scale / max_scale [ROWS, in / 64].
usage: make_block_parity_fixture.py ASSETS_DIR OUT.safetensors
"""
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = "smollm2-135m-instruct-q4_1.gguf"
NSAMPLES, SEQLEN, BATCH, ITERS, ROWS, GROUP = 4, 24, 2, 25, 8, 64
BLOCKS = (0, 1)
LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def gguf_rows(layer, rows, heads, head_dim):
    """HF row index of each of the first `rows` GGUF rows (q/k: llama.cpp's per-head interleave)."""
    if layer not in ("self_attn.q_proj", "self_attn.k_proj"):
        return list(range(rows))
    out = []
    for r in range(rows):
        h, within = divmod(r, head_dim)
        i, j = divmod(within, 2)  # GGUF row 2i + j of a head is HF row j * head_dim/2 + i
        out.append(h * head_dim + j * (head_dim // 2) + i)
    return out


def main(assets, out):
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    assets = Path(assets)
    tokens = [int(t) for t in (assets / "kjv-calib.tokens").read_text().split()]
    windows = [torch.tensor([tokens[i * SEQLEN:(i + 1) * SEQLEN]]) for i in range(NSAMPLES)]
    model = AutoModelForCausalLM.from_pretrained(str(assets), gguf_file=MODEL, dtype=torch.float32,
                                                 attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(str(assets), gguf_file=MODEL)
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads

    from auto_round import AutoRound
    from auto_round.algorithms.composer import AlgorithmComposer
    from auto_round.algorithms.quantization.sign_round.quantizer import SignRoundQuantizer

    fixture, state = {}, {"block": -1}

    def f32(t):
        return t.detach().to(torch.float32).cpu().numpy().copy()

    original_compress = AlgorithmComposer.compress_block

    def compress_block(self, block, fp_inputs, input_others, block_ctx, *args, **kwargs):
        state["block"] = block_ctx.block_index
        if block_ctx.block_index in BLOCKS:
            fixture[f"{block_ctx.block_index}.fp_input"] = np.stack([f32(x[0]) for x in fp_inputs])
        return original_compress(self, block, fp_inputs, input_others, block_ctx, *args, **kwargs)

    original_quantize = SignRoundQuantizer.quantize_block

    def quantize_block(self, block, fp_inputs, input_others, fp_outputs, q_inputs, block_ctx, input_ids=None, **kw):
        b = block_ctx.block_index
        if b in BLOCKS:
            fixture[f"{b}.q_input"] = np.stack([f32(x[0]) for x in fp_inputs])
            fixture[f"{b}.target"] = np.stack([f32(x[0]) for x in fp_outputs])
            fixture[f"{b}.mask"] = np.stack([(ids[0] != -100).numpy().astype(np.uint8) for ids in input_ids])
            state["losses"], state["indices"] = [], []
        best = original_quantize(self, block, fp_inputs, input_others, fp_outputs, q_inputs, block_ctx,
                                 input_ids=input_ids, **kw)
        if b in BLOCKS:
            fixture[f"{b}.losses"] = np.array(state["losses"], dtype=np.float64)
            fixture[f"{b}.indices"] = np.array(state["indices"], dtype=np.int32)
            for layer in LAYERS:
                p = best[layer]
                weight = block.get_submodule(layer).weight
                rows_out, cols = weight.shape
                groups = cols // GROUP
                hf = gguf_rows(layer, ROWS, cfg.num_attention_heads, head_dim)
                v = p["value"].reshape(rows_out, groups * GROUP)[hf, :cols]
                fixture[f"{b}.{layer}.v"] = f32(v)
                fixture[f"{b}.{layer}.min_scale"] = f32(p["min_scale"].reshape(rows_out, groups)[hf])
                fixture[f"{b}.{layer}.max_scale"] = f32(p["max_scale"].reshape(rows_out, groups)[hf])
        return best

    original_loss = SignRoundQuantizer._get_loss

    def get_loss(self, pred, ref, indices, *args, **kw):
        loss = original_loss(self, pred, ref, indices, *args, **kw)
        if state["block"] in BLOCKS:
            state["losses"].append(loss.item())
            state["indices"].append([int(i) for i in indices])
        return loss

    AlgorithmComposer.compress_block = compress_block
    SignRoundQuantizer.quantize_block = quantize_block
    SignRoundQuantizer._get_loss = get_loss

    ar = AutoRound(model, tokenizer, bits=2, group_size=GROUP, sym=False, iters=ITERS, nsamples=NSAMPLES,
                   seqlen=SEQLEN, batch_size=BATCH, dataset=windows, seed=42, amp=False, device_map="cpu",
                   enable_torch_compile=False)
    ar.quantize()
    import auto_round
    save_file(fixture, out, metadata={
        "reference": f"auto-round {auto_round.__version__}, torch {torch.__version__}, CPU, float32",
        "scheme": f"W2G{GROUP} asym", "nsamples": str(NSAMPLES), "seqlen": str(SEQLEN), "batch_size": str(BATCH),
        "iters": str(ITERS), "seed": "42", "rows": str(ROWS), "blocks": " ".join(map(str, BLOCKS)),
        "pad_token_id": str(tokenizer.pad_token_id)})
    print({k: v.shape for k, v in fixture.items() if not k.count(".") > 1})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
