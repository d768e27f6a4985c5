#!/usr/bin/env bash
# Perplexity table of docs/accuracy.md: the float model, then RTN and AutoRound at each scheme,
# all with the autoround CLI on the asset model. Usage: scripts/accuracy-table.sh [BUILD_DIR]
# On a GPU: DEVICE="--device cuda --gemm fp32" scripts/accuracy-table.sh (AUTOROUND= picks another binary)
# Settings (2-core friendly, stated in the docs): 16 calibration samples x 128 tokens, batch 8,
# 200 iters (reference default), evaluation on the first 16 windows x 512 tokens of John.
set -euo pipefail
build=${1:-build}
autoround=${AUTOROUND:-$build/tools/autoround}
device=(${DEVICE:-})
assets=${AUTOROUND_ASSETS:-$HOME/.cache/autoround-cpp}
model=$assets/smollm2-135m-instruct-q4_1.gguf
eval_tokens=$assets/kjv-eval.tokens
out=$(mktemp -d)
common=(--model "$model" --calibration "$assets/kjv-calib.tokens" --nsamples 16 --seqlen 128 --batch-size 8
        --eval "$eval_tokens" --eval-windows 16 --overwrite "${device[@]}")

echo "| scheme | RTN | AutoRound (200 iters) | AutoRound seconds (tuning) | peak RSS (AutoRound run) |"
echo "|---|---|---|---|---|"
for scheme in "4 128 asym" "4 128 sym" "3 128 asym" "2 64 asym"; do
  set -- $scheme
  sym=(); [ "$3" = sym ] && sym=(--sym)
  rtn=$("$autoround" quantize "${common[@]}" --bits "$1" --group-size "$2" "${sym[@]}" --recipe rtn \
        --output "$out/rtn" 2>/dev/null | sed -n 's/^perplexity after: *\([0-9.]*\).*/\1/p')
  tuned_log=$(/usr/bin/time -f "rss_kb %M" -o "$out/time" "$autoround" quantize "${common[@]}" --bits "$1" --group-size "$2" "${sym[@]}" --iters 200 \
        --output "$out/ar" 2>/dev/null)
  tuned=$(echo "$tuned_log" | sed -n 's/^perplexity after: *\([0-9.]*\).*/\1/p')
  fp=$(echo "$tuned_log" | sed -n 's/^perplexity before: *\([0-9.]*\).*/\1/p')
  seconds=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['seconds']))" "$out/ar/quantization_report.json")
  rss=$(awk '/rss_kb/ {printf "%.2f GB", $2 / 1e6}' "$out/time")
  echo "| W$1G$2 $3 | $rtn | $tuned | $seconds | $rss |"
done
echo "float (dequantized Q4_1) perplexity on the same tokens: $fp"
rm -rf "$out"
