#!/usr/bin/env bash
# Perplexity of GGUF files read back (docs/accuracy.md, "Tuned k-quants"): for each GGUF type,
#   llama.cpp  - the k-quant blocks made by llama.cpp's quantizer from the float weights (what
#                llama-quantize does without an importance matrix: --recipe rtn with a scheme flag);
#   AR RTN     - every linear layer quantized with its block type's AutoRound scheme, no tuning
#                (k-quants through the double quantization, iters 0);
#   AutoRound  - the same schemes tuned (200 iters): `autoround quantize --format gguf:TYPE`.
# Each file is scored by `autoround eval` (what llama.cpp would load). Settings as
# scripts/accuracy-table.sh: 16 x 128 calibration tokens, batch 8, 16 x 512 evaluation tokens.
# usage: scripts/gguf-accuracy-table.sh [TYPES="q4_k_m q2_k"]   (AUTOROUND= the binary;
#        on a GPU: DEVICE="--device cuda --gemm fp32")
set -euo pipefail
autoround=${AUTOROUND:-build/tools/autoround}
assets=${AUTOROUND_ASSETS:-$HOME/.cache/autoround-cpp}
model=${MODEL:-$assets/smollm2-135m-instruct-q4_1.gguf}
eval_tokens=$assets/kjv-eval.tokens
out=$(mktemp -d)
device=(${DEVICE:-})
common=(--model "$model" --calibration "$assets/kjv-calib.tokens" --nsamples 16 --seqlen 128 --batch-size 8 --overwrite "${device[@]}")
score() { "$autoround" eval --model "$1" --text "$eval_tokens" --windows 16 2>/dev/null |
          sed -n 's/^perplexity \([0-9.]*\) over.*/\1/p' | tail -1; }
echo "| GGUF type | llama.cpp quantizer | AutoRound schemes, RTN | AutoRound schemes, tuned (200 iters) | tuning seconds |"
echo "|---|---|---|---|---|"
for type in ${1:-q4_k_m q2_k}; do
  "$autoround" quantize "${common[@]}" --format gguf:$type --bits 4 --group-size 32 --recipe rtn --output "$out/cpp" >/dev/null 2>&1
  "$autoround" quantize "${common[@]}" --format gguf:$type --iters 0 --output "$out/rtn" >/dev/null 2>&1
  "$autoround" quantize "${common[@]}" --format gguf:$type --iters 200 --output "$out/ar" >/dev/null 2>&1
  seconds=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['seconds']))" "$out/ar/quantization_report.json")
  echo "| $type | $(score "$out/cpp/gguf-$type/model-$type.gguf") | $(score "$out/rtn/gguf-$type/model-$type.gguf") | $(score "$out/ar/gguf-$type/model-$type.gguf") | $seconds |"
done
echo "source model: $(score "$model")"
rm -rf "$out"
