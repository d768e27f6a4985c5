#!/usr/bin/env bash
# CTest's cli_moe_float: a mixture of experts under the reference's W4A4 / W8A8 presets on the CPU.
# The qwen2_moe fixture (transformers 5.17's random small Qwen2-MoE: 4 experts, a gated shared
# expert) tuned by `autoround quantize --scheme S` with the experts' linear inputs quantized as the
# reference's wrapped expert Linears quantize them; each checkpoint reads back (`autoround eval`,
# which quantizes the inputs as the checkpoint's runtime does: FP8 expert weights and each expert's
# own static input scales read) to a perplexity within 10% of the float model's; the routers, kept
# in float, are listed with act_bits 16 (auto-round's loader refuses a 16-bit layer with 4-bit
# inputs); NVFP4 / FP8_STATIC store every expert's own input scale. (transformers + auto-round
# 0.16.1's loader score these checkpoints to our perplexity: docs/concepts.md; CI has no torch.)
# usage: cli_moe_float_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 model=$2/families/qwen2_moe work=$3
rm -rf "$work" && mkdir -p "$work"
"$autoround" eval --model "$model" --text "$model/text.tokens" --context 16 >"$work/float.eval" 2>&1 ||
  { echo "cli_moe_float: eval of the float model failed"; cat "$work/float.eval"; exit 1; }
for scheme in MXFP4 NVFP4 FP8_STATIC FP8_BLOCK; do
  "$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/$scheme" --scheme $scheme \
    --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 >"$work/$scheme.log" 2>&1 ||
    { echo "cli_moe_float: quantize --scheme $scheme failed"; cat "$work/$scheme.log"; exit 1; }
  "$autoround" eval --model "$work/$scheme/auto_round" --text "$model/text.tokens" --context 16 >"$work/$scheme.eval" 2>&1 ||
    { echo "cli_moe_float: eval of the $scheme checkpoint failed"; cat "$work/$scheme.eval"; exit 1; }
done
# a layer kept float under W8A8 (`--layer 'o_proj=fp'`): its input stays float, as the reference
# quantizes a Linear's input only where it quantizes the Linear; the checkpoint stores no
# input_scale for it, and reading it back must not ask for one
"$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/keep" --scheme FP8_STATIC --layer 'o_proj=fp' \
  --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 >"$work/keep.log" 2>&1 ||
  { echo "cli_moe_float: quantize --scheme FP8_STATIC --layer o_proj=fp failed"; cat "$work/keep.log"; exit 1; }
"$autoround" eval --model "$work/keep/auto_round" --text "$model/text.tokens" --context 16 >"$work/keep.eval" 2>&1 ||
  { echo "cli_moe_float: eval of the FP8_STATIC checkpoint with a float o_proj failed"; cat "$work/keep.eval"; exit 1; }
python3 - "$work" <<'PY'
import json, re, struct, sys
work = sys.argv[1]
def ppl(name):
    return float(re.search(r"^perplexity ([0-9.]+) over", open(f"{work}/{name}.eval").read(), re.M).group(1))
before = ppl("float")
for scheme in ("MXFP4", "NVFP4", "FP8_STATIC", "FP8_BLOCK"):
    after = ppl(scheme)
    assert after != before and abs(after / before - 1) < 0.1, (scheme, before, after)
    qc = json.load(open(f"{work}/{scheme}/auto_round/config.json"))["quantization_config"]
    with open(f"{work}/{scheme}/auto_round/model.safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    if qc.get("act_bits", 16) <= 8:
        for b in range(2):
            assert qc["extra_config"][f"model.layers.{b}.mlp.gate"].get("act_bits") == 16, qc["extra_config"]
    scale = {"NVFP4": "input_global_scale", "FP8_STATIC": "input_scale"}.get(scheme)
    if scale:
        for b in range(2):
            for e in range(4):
                for proj in ("gate_proj", "up_proj", "down_proj"):
                    assert f"model.layers.{b}.mlp.experts.{e}.{proj}.{scale}" in header, (scheme, b, e, proj)
    print(f"cli_moe_float: {scheme}: read back {after:.4f} (float {before:.4f})")
kept = ppl("keep")
assert kept != before and abs(kept / before - 1) < 0.1, (before, kept)
qc = json.load(open(f"{work}/keep/auto_round/config.json"))["quantization_config"]
with open(f"{work}/keep/auto_round/model.safetensors", "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
for b in range(2):
    assert qc["extra_config"][f"model.layers.{b}.self_attn.o_proj"].get("act_bits") == 16, qc["extra_config"]
    assert f"model.layers.{b}.self_attn.o_proj.input_scale" not in header
    assert f"model.layers.{b}.self_attn.q_proj.input_scale" in header
print(f"cli_moe_float: FP8_STATIC with o_proj float: read back {kept:.4f}")
PY
rm -rf "$work"
