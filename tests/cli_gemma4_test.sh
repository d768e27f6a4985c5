#!/usr/bin/env bash
# CTest's cli_gemma4: the Gemma 4 fixture (transformers 5.17's Gemma4ForCausalLM in the 31B's dense
# layout: full layers with their own head size and KV heads, keys as values (no v_proj), v_norm,
# proportional RoPE, layer_scalar; tests/fixtures/families/gemma4_text) tuned by `autoround
# quantize` on the CPU into auto_round and auto_gptq: the sliding layers tune seven linears, the
# full layers six (no v_proj slot), each block beats round-to-nearest; the checkpoints have no
# v_proj in the full layers, keep every layer_scalar exactly and the norms as Gemma 4 stores them
# (w itself, float16), and read back to one perplexity near the float model's (W4G8 sym: GPTQ's v1
# zero points hold every code). From its GGUF: gguf:q8_0 / gguf:q4_k_m, read back. (The GPU's Gemma 4:
# tests/cuda/test_cuda_block_run.cpp.)
# usage: cli_gemma4_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 model=$2/families/gemma4_text work=$3
rm -rf "$work" && mkdir -p "$work"
"$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/out" --format auto_round,auto_gptq \
  --nsamples 3 --seqlen 16 --iters 50 --batch-size 1 --bits 4 --group-size 8 --sym \
  >"$work/quantize.log" 2>&1 || { echo "cli_gemma4: quantize failed"; cat "$work/quantize.log"; exit 1; }
for format in auto_round auto_gptq float; do
  dir=$work/out/$format
  if [ "$format" = float ]; then dir=$model; fi
  "$autoround" eval --model "$dir" --text "$model/text.tokens" --context 16 | awk '/^perplexity/ { print $2 }' >"$work/$format.ppl"
done
python3 - "$model" "$work" "$(dirname "$0")/support" <<'PY' || { cat "$work/quantize.log"; exit 1; }
import json, sys
src, work = sys.argv[1:3]
sys.path.insert(0, sys.argv[3])
from safetensors_file import read
report = json.load(open(work + "/out/quantization_report.json"))
blocks = report["runs"][0]["blocks"]
assert [b["quantized_layers"] for b in blocks] == [7, 6, 7, 6], blocks  # full layers: no v_proj
for b in blocks:
    assert b["best_loss"] < 0.8 * b["rtn_loss"], b
sh, sv, _ = read(src + "/model.safetensors")
for fmt in ("auto_round", "auto_gptq"):
    qh, qv, _ = read(f"{work}/out/{fmt}/model.safetensors")
    for layer in range(4):
        p = f"model.layers.{layer}."
        assert (p + "self_attn.v_proj.qweight" in qh) == (layer % 2 == 0), (fmt, layer)
        assert p + "self_attn.k_proj.qweight" in qh, (fmt, layer)
        assert qh[p + "layer_scalar"]["dtype"] == "F32" and qv(p + "layer_scalar") == sv(p + "layer_scalar"), (fmt, layer)
        assert qh[p + "self_attn.q_norm.weight"]["shape"] == [16 if layer % 2 == 0 else 32], (fmt, layer)
    norms = [n for n in sh if n.endswith("norm.weight")]
    assert len(norms) == 1 + 4 * 6, norms
    for n in norms:  # Gemma 4 computes with w itself: stored as it was (float16)
        worst = max(abs(a - b) for a, b in zip(sv(n), qv(n)))
        assert qh[n]["dtype"] == "F16" and worst <= 1e-3 * max(abs(a) for a in sv(n)), (fmt, n, worst)
config = json.load(open(work + "/out/auto_round/config.json"))
assert config["model_type"] == "gemma4_text" and config["attention_k_eq_v"] is True, config
ppl = {f: float(open(f"{work}/{f}.ppl").read()) for f in ("auto_round", "auto_gptq", "float")}
assert ppl["auto_round"] == ppl["auto_gptq"], ppl
assert abs(ppl["auto_round"] / ppl["float"] - 1) < 0.05, ppl
print("cli_gemma4: full layers without v_proj, layer_scalar and norms kept; perplexity %.4f float, %.4f each checkpoint; "
      "losses %s" % (ppl["float"], ppl["auto_round"], [round(b["best_loss"] / b["rtn_loss"], 3) for b in blocks]))
PY
# from the GGUF llama.cpp's converter wrote (gemma4: no attn_v in the full layers, layer_output_scale,
# rope_freqs): gguf:q8_0 and gguf:q4_k_m, every one of the 26 linear layers from tuned codes. The
# random fixture's unscaled attention scores make it sensitive: gguf:q4_k_m (Q5_0 rows of 64) moves
# its perplexity 16% even untuned (--iters 0: 210.1 against 181.1), hence a 20% bound there.
bash "$(dirname "$0")/support/gguf_family_readback.sh" cli_gemma4 "$autoround" "$model/model.gguf" "$model/text.tokens" "$work" 26 0.2

# The 26B-A4B's layout (tests/fixtures/families/gemma4_moe: 8 GeGLU experts, top 2, beside every
# dense MLP): attention, the MLP and all 24 expert layers tuned in one block loss; the checkpoint
# names the experts as the reference exports them (experts.E.{gate,up,down}_proj, no "mlp."),
# keeps router.proj in float16 (listed as float) and router.scale / per_expert_scale exactly, the
# experts' three norms, and reads back to a perplexity near the float model's. (transformers 5.17 +
# auto-round 0.16.1's loader read it too: docs/block-descriptions.md.)
moe=$2/families/gemma4_moe
"$autoround" quantize --model "$moe" --calibration "$moe/text.tokens" --output "$work/moe" --format auto_round \
  --nsamples 3 --seqlen 16 --iters 50 --batch-size 1 --bits 4 --group-size 32 --sym \
  >"$work/moe.log" 2>&1 || { echo "cli_gemma4: quantize of gemma4_moe failed"; cat "$work/moe.log"; exit 1; }
for dir in "$moe" "$work/moe/auto_round"; do
  "$autoround" eval --model "$dir" --text "$moe/text.tokens" --context 16 | awk '/^perplexity/ { print $2 }'
done >"$work/moe.ppl"
python3 - "$moe" "$work" "$(dirname "$0")/support" <<'PY' || { cat "$work/moe.log"; exit 1; }
import json, sys
src, work = sys.argv[1:3]
sys.path.insert(0, sys.argv[3])
from safetensors_file import read
report = json.load(open(work + "/moe/quantization_report.json"))
run = report["runs"][0]
blocks = run["blocks"]
assert [b["quantized_layers"] for b in blocks] == [7 + 24, 6 + 24, 7 + 24, 6 + 24], blocks
for b in blocks:
    assert b["experts"] == 8 and b["experts_unreached"] == 0, b
    assert b["best_loss"] < 0.5 * b["rtn_loss"], b
sh, sv, _ = read(src + "/model.safetensors")
qh, qv, _ = read(work + "/moe/auto_round/model.safetensors")
extra = json.load(open(work + "/moe/auto_round/config.json"))["quantization_config"]["extra_config"]
for layer in range(4):
    p = f"model.layers.{layer}."
    for e in range(8):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            assert p + f"experts.{e}.{proj}.qweight" in qh, (layer, e, proj)
    assert not any(n.startswith(p + "mlp.experts") for n in qh), layer
    assert p + "mlp.gate_proj.qweight" in qh and p + "mlp.down_proj.qweight" in qh, layer  # the dense MLP beside them
    assert qh[p + "router.proj.weight"]["dtype"] == "F16" and extra[p + "router.proj"] == {"bits": 16, "data_type": "float"}, layer
    router = max(abs(a - b) for a, b in zip(sv(p + "router.proj.weight"), qv(p + "router.proj.weight")))
    assert router <= 1e-3 * max(abs(a) for a in sv(p + "router.proj.weight")), (layer, router)
    for n in ("router.scale", "router.per_expert_scale"):
        assert qh[p + n]["dtype"] == "F32" and qv(p + n) == sv(p + n), (layer, n)
    for n in ("pre_feedforward_layernorm_2", "post_feedforward_layernorm_1", "post_feedforward_layernorm_2"):
        worst = max(abs(a - b) for a, b in zip(sv(p + n + ".weight"), qv(p + n + ".weight")))
        assert worst <= 1e-3 * max(abs(a) for a in sv(p + n + ".weight")), (layer, n, worst)
before, after = (float(x) for x in open(work + "/moe.ppl").read().split())
assert abs(after / before - 1) < 0.05, (before, after)
print("cli_gemma4: gemma4_moe: 31/30 layers per block, experts per expert, router and scales kept; perplexity %.4f float, "
      "%.4f tuned; losses %s" % (before, after, [round(b["best_loss"] / b["rtn_loss"], 3) for b in blocks]))
PY
# its GGUF (llama.cpp's converter: ffn_gate_inp + .scale, fused ffn_gate_up_exps, ffn_down_exps + .scale):
# gguf:q8_0 / gguf:q4_k_m with all 34 linear tensors from tuned codes (per block attention 4 or 3,
# the MLP's 3, ffn_gate_up_exps holding every expert's gate and up codes, ffn_down_exps). This
# fixture's Q8_0 files move its perplexity 3.4% (RTN alone: 218.14 -> 210.90), nearly all of it the
# tied 128 x 64 embedding's Q8_0 rows; transformers scores the same dequantized weights at our
# figures to the last digit (scripts/check_gemma4_gguf_transformers.py: q8_0 210.9043, q4_k_m 200.2254).
mkdir -p "$work/moe-gguf"
bash "$(dirname "$0")/support/gguf_family_readback.sh" cli_gemma4 "$autoround" "$moe/model.gguf" "$moe/text.tokens" "$work/moe-gguf" 34 0.2 0.05
# Gemma 4 E2B's pieces (tests/fixtures/families/gemma4_e2b: per-layer embeddings, layers 4 and 5
# attending with layers 2's and 3's keys and values, their MLPs double-wide): tuned into auto_round,
# the per-layer branch's gate and projection tuned as linear slots (9 per layer, 7 in the kv-shared
# ones: no k_proj / v_proj), each block beating round to nearest; the checkpoint keeps the per-layer
# table, projection and norms, writes no k_proj / v_proj / k_norm for the shared layers, and reads
# back near the float model.
# (--eval: the tuned model kept in memory with its per-layer embedding, scored on 512 random ids)
e2b=$2/families/gemma4_e2b
python3 -c "import random; random.seed(1); print(' '.join(str(random.randrange(128)) for _ in range(600)))" >"$work/e2b-eval.tokens"
"$autoround" quantize --model "$e2b" --calibration "$e2b/text.tokens" --output "$work/e2b" --format auto_round \
  --nsamples 3 --seqlen 16 --iters 50 --batch-size 1 --bits 4 --group-size 8 --sym --eval "$work/e2b-eval.tokens" --eval-windows 1 \
  >"$work/e2b.log" 2>&1 || { echo "cli_gemma4: quantize gemma4_e2b failed"; cat "$work/e2b.log"; exit 1; }
grep -q "^perplexity after:" "$work/e2b.log" || { echo "cli_gemma4: gemma4_e2b --eval printed no perplexity after"; cat "$work/e2b.log"; exit 1; }
for dir in "$work/e2b/auto_round" "$e2b"; do
  "$autoround" eval --model "$dir" --text "$e2b/text.tokens" --context 16 | awk '/^perplexity/ { print $2 }'
done >"$work/e2b.ppl"
python3 - "$e2b" "$work" "$(dirname "$0")/support" <<'PY' || { cat "$work/e2b.log"; exit 1; }
import json, sys
src, work = sys.argv[1:3]
sys.path.insert(0, sys.argv[3])
from safetensors_file import read
blocks = json.load(open(work + "/e2b/quantization_report.json"))["runs"][0]["blocks"]
assert [b["quantized_layers"] for b in blocks] == [9, 9, 9, 9, 7, 7], blocks
for b in blocks:
    assert b["best_loss"] < 0.9 * b["rtn_loss"], b
qh, qv, _ = read(work + "/e2b/auto_round/model.safetensors")
sh, sv, _ = read(src + "/model.safetensors")
for layer in range(6):
    p = f"model.layers.{layer}."
    shared = layer >= 4
    for name in ("self_attn.k_proj.qweight", "self_attn.v_proj.qweight", "self_attn.k_norm.weight"):
        assert (p + name in qh) == (not shared), (layer, name)
    for name in ("per_layer_input_gate.qweight", "per_layer_projection.qweight", "post_per_layer_input_norm.weight", "mlp.gate_proj.qweight"):
        assert p + name in qh, (layer, name)
for n in ("model.embed_tokens_per_layer.weight", "model.per_layer_model_projection.weight", "model.per_layer_projection_norm.weight"):
    worst = max(abs(a - b) for a, b in zip(sv(n), qv(n)))
    assert qh[n]["shape"] == sh[n]["shape"] and worst <= 1e-3 * max(abs(a) for a in sv(n)), (n, worst)
quantized, float_ = (float(x) for x in open(work + "/e2b.ppl").read().split())
assert abs(quantized / float_ - 1) < 0.05, (quantized, float_)
print("cli_gemma4: gemma4_e2b per-layer branch tuned, shared layers without k/v, per-layer embedding kept; perplexity %.4f float, "
      "%.4f auto_round; losses %s" % (float_, quantized, [round(b["best_loss"] / b["rtn_loss"], 3) for b in blocks]))
PY
echo "cli_gemma4: ok"
rm -rf "$work"
