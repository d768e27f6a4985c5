#!/usr/bin/env bash
# Issue #24 item 3 (time to the reference's accuracy): our runs at several step counts on the
# parity harness (scripts/parity-harness.sh: the asset model, 96 x 512 windows of kjv-calib, batch
# 8, scored by scripts/parity_eval.py on kjv-eval and botchan), three schemes x three seeds, so the
# fewest steps that reach the reference's 200-step perplexity on both texts can be read off
# docs/accuracy.md's reference rows (W2G64 asym seeds 42/1/2 and W4G64 sym seed 42 are there; the
# reference's export rejects group 128 on the asset's 576 columns, so W4G128 asym has no
# reference row: `ref` runs of 4:64:sym:1 and 4:64:sym:2 complete the table).
# Runs on the lent GPU machine; about 25 s per run there (36 runs at the default STEPS).
# usage: scripts/recipe-sweep.sh ASSETS AUTOROUND_BINARY OUT_DIR [STEPS="25 50 100 200"]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
assets=$1 binary=$2 out=$3 steps=${4:-25 50 100 200}
rows=(2:64:asym:42 2:64:asym:1 2:64:asym:2 4:64:sym:42 4:64:sym:1 4:64:sym:2 4:128:asym:42 4:128:asym:1 4:128:asym:2)
for it in $steps; do
  echo "== $it steps"
  ITERS=$it OURS_TAG="it$it" "$here/parity-harness.sh" "$assets" "$binary" "$out/it$it" ours "${rows[@]}"
done
