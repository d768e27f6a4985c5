#!/usr/bin/env bash
# GGUF judged by llama.cpp itself (docs/accuracy.md, "GGUF through llama.cpp"): for each file type,
#   llama.cpp          - llama-quantize (--allow-requantize: the asset is Q4_1, dequantized as we do);
#   llama.cpp+imatrix  - the same with an importance matrix from llama-imatrix on the calibration
#                        text (-c 512, as many chunks as our calibration windows);
#   AutoRound          - `autoround quantize --format gguf:TYPE,...`: every linear layer tuned for the
#                        block type llama-quantize gives it (same types, same file size);
# every file scored by llama-perplexity -c 512 on the evaluation texts. Prints one markdown table.
# usage: scripts/gguf-llama-table.sh AUTOROUND LLAMA_BIN_DIR ASSETS OUT [TYPES="q2_k q3_k_m q4_k_m"]
#        ASSETS: the model, kjv-calib.tokens/.txt, kjv-eval.txt, botchan.txt;
#        AR_FLAGS: extra autoround flags (default: --device cuda); NSAMPLES/SEQLEN/ITERS (96/512/200);
#        THREADS for llama.cpp (default: all cores)
set -euo pipefail
autoround=$1 bin=$2 assets=$3 out=$4
types=${5:-q2_k q3_k_m q4_k_m}
nsamples=${NSAMPLES:-96} seqlen=${SEQLEN:-512} iters=${ITERS:-200}
threads=${THREADS:-$(nproc)}
model=$assets/smollm2-135m-instruct-q4_1.gguf
texts=(kjv-eval.txt botchan.txt)
mkdir -p "$out"
formats=$(for t in $types; do printf 'gguf:%s,' "$t"; done)
start=$(date +%s.%N)
# shellcheck disable=SC2086
"$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.tokens" --nsamples "$nsamples" --seqlen "$seqlen" \
    --iters "$iters" --format "${formats%,}" --output "$out/ar" --overwrite ${AR_FLAGS:---device cuda} >"$out/autoround.log" 2>&1
echo "autoround: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['seconds'], 1))" "$out/ar/quantization_report.json") s tuning, $(python3 -c "import time,sys; print(round(time.time() - float(sys.argv[1]), 1))" "$start") s wall"
"$bin/llama-imatrix" -m "$model" -f "$assets/kjv-calib.txt" -o "$out/imatrix.gguf" -c "$seqlen" --chunks "$nsamples" -t "$threads" >"$out/imatrix.log" 2>&1
for t in $types; do
  "$bin/llama-quantize" --allow-requantize "$model" "$out/cpp-$t.gguf" "${t^^}" "$threads" >"$out/quantize-$t.log" 2>&1
  "$bin/llama-quantize" --allow-requantize --imatrix "$out/imatrix.gguf" "$model" "$out/imat-$t.gguf" "${t^^}" "$threads" >>"$out/quantize-$t.log" 2>&1
done
ppl() {  # file text -> final perplexity estimate
  "$bin/llama-perplexity" -m "$1" -f "$assets/$2" -c 512 -t "$threads" 2>&1 | tee -a "$out/perplexity.log" |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
mb() { python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1]) / 1e6:.2f}')" "$1"; }
echo "| type | file MB (llama.cpp / +imatrix / AutoRound) | llama.cpp | llama.cpp + imatrix | AutoRound tuned |"
echo "|---|---|---|---|---|"
for t in $types; do
  ours=$out/ar/gguf-$t/model-$t.gguf
  row="| $t | $(mb "$out/cpp-$t.gguf") / $(mb "$out/imat-$t.gguf") / $(mb "$ours") |"
  for f in "$out/cpp-$t.gguf" "$out/imat-$t.gguf" "$ours"; do
    cell=""
    for text in "${texts[@]}"; do cell+="$(ppl "$f" "$text") / "; done
    row+=" ${cell% / } |"
  done
  echo "$row"
done
cell=""
for text in "${texts[@]}"; do cell+="$(ppl "$model" "$text") / "; done
echo "source model (Q4_1, what all three start from), ${texts[*]}: ${cell% / }"
