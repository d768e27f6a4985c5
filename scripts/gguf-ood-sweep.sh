#!/usr/bin/env bash
# Which tuning settings generalize past the calibration's domain at llama.cpp's low-bit mixes
# (docs/accuracy.md, "GGUF through llama.cpp"): for each variant (a label and autoround flags) the
# GGUF types are tuned on the calibration (GPU, one after the other), then every file is scored by
# llama-perplexity -c 512 on the texts (CPU, up to nproc/THREADS runs at once, THREADS each).
# A variant whose flags are `@imatrix` is llama.cpp's own: llama-imatrix on the same calibration
# text (-c SEQLEN --chunks NSAMPLES, the same windows), then llama-quantize --imatrix per type.
# usage: scripts/gguf-ood-sweep.sh AUTOROUND LLAMA_BIN_DIR ASSETS OUT 'label|flags' ...
#        TYPES (default "q2_k q3_k_m"), TEXTS (default "botchan.txt kjv-eval.txt"), NSAMPLES/SEQLEN (96/512),
#        CALIB: the calibration's name in ASSETS, NAME.tokens for autoround, NAME.txt for llama-imatrix
#        (default kjv-calib; mixed-calib is the three-domain text, docs/assets.md), DEVICE (cuda; cpu)
set -euo pipefail
autoround=$1 bin=$2 assets=$3 out=$4
shift 4
types=${TYPES:-q2_k q3_k_m} texts=${TEXTS:-botchan.txt kjv-eval.txt}
threads=${THREADS:-4} calib=${CALIB:-kjv-calib} device=${DEVICE:-cuda}
nsamples=${NSAMPLES:-96} seqlen=${SEQLEN:-512}
model=$assets/smollm2-135m-instruct-q4_1.gguf
formats=$(for t in $types; do printf 'gguf:%s,' "$t"; done)
mkdir -p "$out"
labels=()
for variant in "$@"; do
  label=${variant%%|*} flags=${variant#*|}
  labels+=("$label")
  start=$(date +%s)
  if [ "$flags" = "@imatrix" ]; then
    "$bin/llama-imatrix" -m "$model" -f "$assets/$calib.txt" -o "$out/$label.imatrix.gguf" -c "$seqlen" \
        --chunks "$nsamples" -t "$(nproc)" >"$out/$label.log" 2>&1
    for t in $types; do
      mkdir -p "$out/$label/gguf-$t"
      "$bin/llama-quantize" --allow-requantize --imatrix "$out/$label.imatrix.gguf" "$model" \
          "$out/$label/gguf-$t/model-$t.gguf" "${t^^}" "$(nproc)" >>"$out/$label.log" 2>&1
    done
  else
    # shellcheck disable=SC2086
    "$autoround" quantize --model "$model" --calibration "$assets/$calib.tokens" --nsamples "$nsamples" \
        --seqlen "$seqlen" --format "${formats%,}" --output "$out/$label" --overwrite --device "$device" $flags \
        >"$out/$label.log" 2>&1
  fi
  echo "made $label ($flags, $calib, $nsamples x $seqlen): $(( $(date +%s) - start )) s" >&2
done
# Every (label, type, text) scored, the longest text first so the runs end together.
export bin assets out threads
for text in $texts; do for label in "${labels[@]}"; do for t in $types; do echo "$label $t $text"; done; done; done |
  xargs -P "$(( $(nproc) / threads > 0 ? $(nproc) / threads : 1 ))" -L 1 bash -c '
    "$bin/llama-perplexity" -m "$out/$0/gguf-$1/model-$1.gguf" -f "$assets/$2" -c 512 -t "$threads" 2>&1 |
      sed -n "s/.*Final estimate: PPL = \([0-9.]*\).*/\1/p" > "$out/$0.$1.$2.ppl"'
printf '| variant (%s, %s x %s) |' "$calib" "$nsamples" "$seqlen"
for t in $types; do printf ' %s (%s) |' "$t" "${texts// / \/ }"; done; echo
for label in "${labels[@]}"; do
  printf '| %s |' "$label"
  for t in $types; do
    cell=""; for text in $texts; do cell+="$(cat "$out/$label.$t.$text.ppl") / "; done
    printf ' %s |' "${cell% / }"
  done
  echo
done
