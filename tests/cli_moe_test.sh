#!/usr/bin/env bash
# CTest's cli_moe: a Qwen3-MoE checkpoint (tiny, random: scripts/make_tiny_moe.py) evaluates with
# `autoround eval` (a finite perplexity), and `autoround quantize` refuses it naming the block
# (its tuning is not built yet), leaving no output, staging or DIR.resume behind.
# usage: cli_moe_test.sh AUTOROUND SCRIPTS_DIR WORK_DIR
set -euo pipefail
autoround=$1 scripts=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
python3 "$scripts/make_tiny_moe.py" "$work/model"
"$autoround" eval --model "$work/model" --text "$work/model/text.tokens" >"$work/eval.log" 2>&1 ||
  { echo "cli_moe: eval failed"; cat "$work/eval.log"; exit 1; }
grep -Eq "^perplexity [0-9]+\.[0-9]+ over 2044 tokens" "$work/eval.log" || { echo "cli_moe: no perplexity"; cat "$work/eval.log"; exit 1; }
status=0
"$autoround" quantize --model "$work/model" --calibration "$work/model/text.tokens" --output "$work/out" \
  --nsamples 2 --seqlen 64 --iters 2 >"$work/quantize.log" 2>&1 || status=$?
[ $status -eq 1 ] || { echo "cli_moe: quantize gave status $status, expected 1"; cat "$work/quantize.log"; exit 1; }
grep -q "model.layers.0: a mixture-of-experts block: its tuning is not built yet" "$work/quantize.log" ||
  { echo "cli_moe: the error does not name the block"; cat "$work/quantize.log"; exit 1; }
for left in "$work/out" "$work/out.partial" "$work/out.resume"; do
  [ ! -e "$left" ] || { echo "cli_moe: $left was left behind"; exit 1; }
done
echo "cli_moe: $(grep '^perplexity' "$work/eval.log"); quantize refused it, nothing left behind"
rm -rf "$work"
