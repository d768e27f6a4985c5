#!/usr/bin/env bash
# Accuracy parity for the floating-point schemes (docs/accuracy.md "Floating-point formats"): the
# reference, auto-round 0.16.1, and ours on the same float model (the asset GGUF), the same
# calibration windows (NSAMPLES consecutive windows of SEQLEN tokens of kjv-calib.tokens), batch 8,
# the seed; every checkpoint written in the auto_round format and scored by one evaluator,
# transformers 5.17 with auto-round's own loader (scripts/check_transformers_load.py: activations
# quantized as the checkpoint says, CPU float32, EVAL_WINDOWS windows of 512 tokens) on
# kjv-eval.tokens and botchan.tokens. Runs on the lent GPU machine (the reference's wheels in
# PYTHONPATH, see docs/accuracy.md).
#
# usage: scripts/fp-parity.sh ASSETS AUTOROUND_BINARY OUT WHAT ROW...
#   WHAT: ours    our runs, one at a time (--device cuda, bf16 GEMMs; wall time measured)
#         ref     the reference's runs, one at a time;  refpar: all at once (wall times not comparable)
#         eval    only score what OUT holds
#   ROW:  SCHEME:SEED[:RECIPE]   e.g. MXFP4:42  NVFP4:1:fast  (RECIPE: ours only; default = 200 steps;
#         rtn = iters 0, for the reference with disable_opt_rtn; algext = the reference's enable_alg_ext)
# Environment: NSAMPLES (16), SEQLEN (256), EVAL_WINDOWS (8), JOBS (4: evaluations at once).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
assets=$1 binary=$2 out=$3 what=$4
shift 4
nsamples=${NSAMPLES:-16} seqlen=${SEQLEN:-256} windows=${EVAL_WINDOWS:-8}
mkdir -p "$out"
pids=()
for row in "$@"; do
  IFS=: read -r scheme seed recipe <<<"$row"
  recipe=${recipe:-default}
  case "$what" in
    ours)
      tag="ours-$scheme-s$seed-$recipe"
      flags=(); [ "$recipe" = default ] || flags=(--recipe "$recipe")
      start=$EPOCHREALTIME
      "$binary" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
        --nsamples "$nsamples" --seqlen "$seqlen" --batch-size 8 --scheme "$scheme" --seed "$seed" "${flags[@]}" \
        --format auto_round --device cuda --gemm bf16 --output "$out/$tag" --overwrite >"$out/$tag.log" 2>&1
      awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$tag" 'BEGIN { printf "%s seconds %.1f\n", t, b - a }'
      ;;
    ref|refpar)
      tag="ref-$scheme-s$seed-$recipe"
      iters=(--iters 200)
      [ "$recipe" = rtn ] && iters=(--iters 0 --disable-opt-rtn)
      [ "$recipe" = algext ] && iters=(--iters 200 --enable-alg-ext)
      run_ref() {
        python3 "$here/parity_reference.py" "$assets" "$out/$tag" --scheme "$scheme" "${iters[@]}" --nsamples "$nsamples" \
          --seqlen "$seqlen" --batch-size 8 --seed "$seed" >"$out/$tag.log" 2>&1
        # it writes a subdirectory, and for a model read from GGUF a config without model_type
        python3 - "$out/$tag" <<'EOF'
import json, pathlib, sys
for c in pathlib.Path(sys.argv[1]).rglob("config.json"):
    d = json.loads(c.read_text())
    d.setdefault("model_type", "llama")
    c.write_text(json.dumps(d, indent=2))
EOF
        echo "$tag $(grep 'reference seconds' "$out/$tag.log")"
      }
      if [ "$what" = ref ]; then run_ref; else run_ref & pids+=($!); fi
      ;;
  esac
done
for p in "${pids[@]}"; do wait "$p"; done
[ "$what" = eval ] || exit 0
dirs=()
for d in "$out"/*/; do
  c=$(find "$d" -name config.json -print -quit)
  [ -n "$c" ] && dirs+=("$(dirname "$c")")
done
# every (checkpoint, text) scored in its own process, JOBS at a time with 16 / JOBS threads each
score() {
  local r
  r=$(python3 "$here/check_transformers_load.py" "$assets/$1.tokens" 512 "$windows" "$2" 2>>"$out/eval.err" | tail -1)
  echo "$1 ${r:-FAILED: $2 (see $out/eval.err)}"
}
export -f score
export here assets windows out
jobs=${JOBS:-4}
for text in kjv-eval botchan; do
  for d in "${dirs[@]}"; do echo "$text $d"; done
done | OMP_NUM_THREADS=$((16 / jobs)) xargs -P "$jobs" -L 1 bash -c 'score "$0" "$1"' | sort
