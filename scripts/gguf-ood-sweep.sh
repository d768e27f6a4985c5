#!/usr/bin/env bash
# Which tuning settings generalize past the calibration's domain at llama.cpp's low-bit mixes
# (docs/accuracy.md, "GGUF through llama.cpp"): for each variant (a label and autoround flags) the
# GGUF types are tuned on the calibration (GPU, one after the other), then every file is scored by
# llama-perplexity -c 512 on the texts (CPU, the files side by side, THREADS each).
# usage: scripts/gguf-ood-sweep.sh AUTOROUND LLAMA_BIN_DIR ASSETS OUT 'label|flags' ...
#        TYPES (default "q2_k q3_k_m"), TEXTS (default "botchan.txt kjv-eval.txt"), NSAMPLES/SEQLEN (96/512)
set -euo pipefail
autoround=$1 bin=$2 assets=$3 out=$4
shift 4
types=${TYPES:-q2_k q3_k_m} texts=${TEXTS:-botchan.txt kjv-eval.txt}
threads=${THREADS:-4}
model=$assets/smollm2-135m-instruct-q4_1.gguf
formats=$(for t in $types; do printf 'gguf:%s,' "$t"; done)
mkdir -p "$out"
labels=()
for variant in "$@"; do
  label=${variant%%|*} flags=${variant#*|}
  labels+=("$label")
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.tokens" --nsamples "${NSAMPLES:-96}" \
      --seqlen "${SEQLEN:-512}" --format "${formats%,}" --output "$out/$label" --overwrite --device cuda $flags \
      >"$out/$label.log" 2>&1
  echo "tuned $label ($flags): $(( $(date +%s) - start )) s" >&2
done
score() {  # label type text -> perplexity
  "$bin/llama-perplexity" -m "$out/$1/gguf-$2/model-$2.gguf" -f "$assets/$3" -c 512 -t "$threads" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' > "$out/$1.$2.$3.ppl"
}
for label in "${labels[@]}"; do
  for t in $types; do
    for text in $texts; do score "$label" "$t" "$text" & done
  done
  wait
done
printf '| variant |'; for t in $types; do printf ' %s (%s) |' "$t" "${texts// / \/ }"; done; echo
for label in "${labels[@]}"; do
  printf '| %s |' "$label"
  for t in $types; do
    cell=""; for text in $texts; do cell+="$(cat "$out/$label.$t.$text.ppl") / "; done
    printf ' %s |' "${cell% / }"
  done
  echo
done
