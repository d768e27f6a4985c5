#!/usr/bin/env bash
# Accuracy parity harness (docs/accuracy.md): the reference, auto-round 0.16.1, and ours on the
# same float model (the asset GGUF), the same calibration windows (NSAMPLES consecutive windows
# of SEQLEN tokens of kjv-calib.tokens), the same settings (batch 8, ITERS steps, the seed), each
# written in the auto_round format and scored by one evaluator that is neither tool
# (scripts/parity_eval.py: transformers with the checkpoint's weights unpacked by numpy) on two
# texts: kjv-eval.tokens (the calibration's domain) and botchan.tokens (an English novel).
# Runs on the lent GPU machine (torch and transformers there; the reference's wheels carried in
# .whl, see docs/accuracy.md for the whole recipe).
#
# usage: scripts/parity-harness.sh ASSETS AUTOROUND_BINARY OUT_DIR WHAT ROW...
#   WHAT: ours   our runs (one at a time: their wall time is measured) and RTN
#         ref    the reference's runs, one at a time
#         refpar the reference's runs, all at once (their wall times are then not comparable)
#   ROW:  BITS:GROUP:asym|sym[:SEED][:streams]   e.g. 2:64:asym:42  4:128:asym  2:64:asym:42:quantized
# Environment: NSAMPLES (96), SEQLEN (512), ITERS (200), GEMM (bf16: the reference's amp),
#   OURS_FLAGS: more flags for our runs (e.g. "--clip-init search"), OURS_TAG: a suffix naming them;
#   REF_FLAGS, REF_TAG: the same for the reference's (e.g. "--enable-alg-ext", parity_reference.py's flags).
# Prints one line per run (name, seconds) and then, per run, the perplexity on both texts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
assets=$1 binary=$2 out=$3 what=$4
shift 4
nsamples=${NSAMPLES:-96} seqlen=${SEQLEN:-512} iters=${ITERS:-200} gemm=${GEMM:-bf16}
mkdir -p "$out"
entries=()
pids=()
for row in "$@"; do
  IFS=: read -r bits group sym seed streams <<<"$row"
  seed=${seed:-42} streams=${streams:-two}
  symflag=(); [ "$sym" = sym ] && symflag=(--sym)
  name="w${bits}g${group}-${sym}-s${seed}"
  case "$what" in
    ours)
      tag="ours-$name-$streams${OURS_TAG:+-$OURS_TAG}"
      start=$EPOCHREALTIME
      "$binary" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
        --nsamples "$nsamples" --seqlen "$seqlen" --batch-size 8 --iters "$iters" --bits "$bits" --group-size "$group" \
        "${symflag[@]}" --seed "$seed" --streams "$streams" --format auto_round --device cuda --gemm "$gemm" \
        ${OURS_FLAGS:-} --output "$out/$tag" --overwrite >"$out/$tag.log" 2>&1
      awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$tag" 'BEGIN { printf "%s seconds %.1f\n", t, b - a }'
      entries+=("$tag=$out/$tag/auto_round")
      if [ ! -d "$out/rtn-w${bits}g${group}-${sym}" ]; then
        "$binary" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
          --nsamples 8 --seqlen "$seqlen" --bits "$bits" --group-size "$group" "${symflag[@]}" --recipe rtn --clip-init unit \
          --format auto_round --output "$out/rtn-w${bits}g${group}-${sym}" --overwrite >/dev/null 2>&1
        entries+=("rtn-w${bits}g${group}-${sym}=$out/rtn-w${bits}g${group}-${sym}/auto_round")
      fi
      ;;
    ref|refpar)
      tag="ref-$name${REF_TAG:+-$REF_TAG}"
      run_ref() {
        python3 "$here/parity_reference.py" "$assets" "$out/$tag" --bits "$bits" --group-size "$group" "${symflag[@]}" \
          --iters "$iters" --nsamples "$nsamples" --seqlen "$seqlen" --batch-size 8 --seed "$seed" ${REF_FLAGS:-} >"$out/$tag.log" 2>&1
        echo "$tag $(grep 'reference seconds' "$out/$tag.log")"
      }
      if [ "$what" = ref ]; then run_ref; else run_ref & pids+=($!); fi
      entries+=("$tag=$out/$tag")
      ;;
  esac
done
for p in "${pids[@]}"; do wait "$p"; done
echo "perplexity: name kjv-eval botchan"
float=(); [ "$what" = ours ] && float=(float=float)
# the evaluator's warnings go to OUT/eval.err; a failure (a checkpoint it cannot read) is shown
python3 "$here/parity_eval.py" "$assets" "$assets/kjv-eval.tokens,$assets/botchan.tokens" "${float[@]}" "${entries[@]}" 2>"$out/eval.err" ||
  { echo "parity_eval.py failed:"; tail -5 "$out/eval.err"; exit 1; }
