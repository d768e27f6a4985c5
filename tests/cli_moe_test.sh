#!/usr/bin/env bash
# CTest's cli_moe: a Qwen3-MoE checkpoint (tiny, random: scripts/make_tiny_moe.py) evaluates with
# `autoround eval` (a finite perplexity); `autoround quantize` tunes it on the CPU (attention and
# every expert in the block loss) into the auto_round format: the report counts each block's
# experts, scripts/check_moe_export.py reads every expert back under its own name and finds its
# own weights, and --eval's perplexity after stays near the float model's.
# usage: cli_moe_test.sh AUTOROUND SCRIPTS_DIR WORK_DIR
set -euo pipefail
autoround=$1 scripts=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
python3 "$scripts/make_tiny_moe.py" "$work/model"
"$autoround" eval --model "$work/model" --text "$work/model/text.tokens" >"$work/eval.log" 2>&1 ||
  { echo "cli_moe: eval failed"; cat "$work/eval.log"; exit 1; }
grep -Eq "^perplexity [0-9]+\.[0-9]+ over 2044 tokens" "$work/eval.log" || { echo "cli_moe: no perplexity"; cat "$work/eval.log"; exit 1; }
"$autoround" quantize --model "$work/model" --calibration "$work/model/text.tokens" --output "$work/out" --format auto_round \
  --nsamples 8 --seqlen 64 --iters 20 --batch-size 4 --group-size 32 --eval "$work/model/text.tokens" --eval-windows 2 \
  >"$work/quantize.log" 2>&1 || { echo "cli_moe: quantize failed"; cat "$work/quantize.log"; exit 1; }
python3 - "$work/out/quantization_report.json" "$work/quantize.log" <<'PY' || { cat "$work/quantize.log"; exit 1; }
import json, re, sys
report = json.load(open(sys.argv[1]))
blocks = report["runs"][0]["blocks"]
assert len(blocks) == 2, blocks
for b in blocks:
    assert b["experts"] == 4 and 0 <= b["experts_unreached"] <= 4, b
    assert b["quantized_layers"] == 2 + 4 * 3, b  # q and o (k and v have 16 rows: full precision), 4 experts x 3
    assert b["best_loss"] <= b["rtn_loss"], b
after = report["runs"][0]["perplexity_after"]
before = report["perplexity_before"]
assert after < 1.5 * before, (before, after)
print("cli_moe: report ok: perplexity %.3f before, %.3f after; unreached experts %s" % (before, after, [b["experts_unreached"] for b in blocks]))
PY
# our own reader reads the quantized experts back: the run's "after" perplexity; the routers are
# listed as float layers (extra_config bits 16), or transformers' auto-round loader would try to
# unpack them (it failed on our checkpoints before: scripts/check_transformers_load.py)
"$autoround" eval --model "$work/out/auto_round" --text "$work/model/text.tokens" --windows 2 >"$work/eval_out.log" 2>&1 ||
  { echo "cli_moe: eval of the checkpoint failed"; cat "$work/eval_out.log"; exit 1; }
python3 - "$work/out" "$work/eval_out.log" <<'PY' || exit 1
import json, re, sys
out, log = sys.argv[1:]
after = json.load(open(out + "/quantization_report.json"))["runs"][0]["perplexity_after"]
ours = float(re.search(r"^perplexity ([0-9.]+) over", open(log).read(), re.M).group(1))
assert abs(ours - after) <= 1e-3 * after, (ours, after)
extra = json.load(open(out + "/auto_round/config.json"))["quantization_config"]["extra_config"]
for b in range(2):
    assert extra.get(f"model.layers.{b}.mlp.gate") == {"bits": 16, "data_type": "float"}, extra
print("cli_moe: the checkpoint reads back to %.4f (the run's after: %.4f); routers listed as float" % (ours, after))
PY
python3 "$scripts/check_moe_export.py" "$work/model" "$work/out/auto_round" >"$work/check.log" ||
  { echo "cli_moe: the exported experts do not read back"; cat "$work/check.log"; exit 1; }
echo "cli_moe: $(grep '^perplexity' "$work/eval.log"); $(grep -c '^ok' "$work/check.log") expert layers read back"
rm -rf "$work"
