#!/usr/bin/env bash
# Our W4A4 / W8A8 checkpoints judged by transformers + auto-round's loader: each family fixture
# tuned by `autoround quantize --scheme S`, scored by `autoround eval` (OURS) and by
# scripts/check_transformers_load.py (transformers 5.17 + auto-round 0.16.1, float32 on the CPU),
# which prints both and their ratio. Test-time tool (needs torch, transformers, auto-round).
# usage: scripts/judge_float_checkpoints.sh AUTOROUND PYTHON WORK_DIR [FIXTURE:SCHEME[:LAYER_OVERRIDE]]...
#   default: qwen3_moe, qwen2_moe and mixtral under MXFP4, NVFP4, FP8_STATIC; qwen2_moe FP8_STATIC
#   with o_proj kept float; phi3 (dense) FP8_STATIC, MXFP4 with down_proj kept float, NVFP4 with o_proj kept float
set -euo pipefail
autoround=$1 python=$2 work=$3
shift 3
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  for f in qwen3_moe qwen2_moe mixtral; do for s in MXFP4 NVFP4 FP8_STATIC; do cases+=("$f:$s"); done; done
  cases+=("qwen2_moe:FP8_STATIC:o_proj=fp" "phi3:FP8_STATIC" "phi3:MXFP4:down_proj=fp" "phi3:NVFP4:o_proj=fp")
fi
cd "$(dirname "$0")/.."
mkdir -p "$work"
for c in "${cases[@]}"; do
  IFS=: read -r fixture scheme layer <<<"$c"
  model=tests/fixtures/families/$fixture out="$work/$fixture-$scheme${layer:+-${layer%%=*}}"
  extra=()
  [ -n "$layer" ] && extra=(--layer "$layer")
  "$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$out" --scheme "$scheme" "${extra[@]}" \
    --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 >"$out.log" 2>&1 || { echo "$c: quantize failed (see $out.log)"; continue; }
  ours=$("$autoround" eval --model "$out/auto_round" --text "$model/text.tokens" --context 16 --windows 3 2>&1 |
    sed -n 's/^perplexity \([0-9.]*\) over.*/\1/p')
  "$python" scripts/check_transformers_load.py "$model/text.tokens" 16 3 "$out/auto_round=$ours" 2>&1 | grep "perplexity" | sed "s|^|$c: |" ||
    echo "$c: transformers did not load it (see above)"
done
