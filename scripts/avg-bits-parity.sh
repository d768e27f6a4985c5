#!/usr/bin/env bash
# Mixed precision at an average bit width, ours (`--avg-bits B --options ...`) against the
# reference's AutoScheme (auto-round 0.16.1) on the parity harness's model, calibration and
# evaluator (scripts/parity-harness.sh, docs/accuracy.md "Mixed precision at an average bit
# width"): for each budget B, both quantize the asset with the same candidate schemes and the same
# calibration windows, in the auto_round format, one after the other (wall times comparable), and
# scripts/parity_eval.py scores every checkpoint on kjv-eval and botchan.
# Runs on the lent GPU machine (torch, transformers; the reference's wheels in .whl).
# usage: scripts/avg-bits-parity.sh ASSETS AUTOROUND OUT OPTIONS B [B ...]
#   e.g. scripts/avg-bits-parity.sh gpu-data gpu-bin/autoround /root/ab W2A16,W3A16,W4A16 2.5 3.0
# Environment: NSAMPLES (96), SEQLEN (512), ITERS (200), SEED (42), COUNT (scale_zp: count scales
# and zero points as the reference's default; weights: --ignore-scale-zp-bits on both sides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
assets=$1 binary=$2 out=$3 options=$4
shift 4
nsamples=${NSAMPLES:-96} seqlen=${SEQLEN:-512} iters=${ITERS:-200} seed=${SEED:-42} count=${COUNT:-scale_zp}
ours_count=() ref_count=""
if [ "$count" = weights ]; then ours_count=(--ignore-scale-zp-bits); ref_count=":ignore_scale_zp_bits"; fi
mkdir -p "$out"
entries=()
for bits in "$@"; do
  tag="ours-b$bits-s$seed"
  start=$EPOCHREALTIME
  "$binary" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
    --nsamples "$nsamples" --seqlen "$seqlen" --batch-size 8 --iters "$iters" --seed "$seed" --avg-bits "$bits" \
    --options "$options" "${ours_count[@]}" --format auto_round --device cuda --output "$out/$tag" --overwrite >"$out/$tag.log" 2>&1
  awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$tag" 'BEGIN { printf "%s seconds %.1f\n", t, b - a }'
  grep -- "--avg-bits" "$out/$tag.log" || true
  entries+=("$tag=$out/$tag/auto_round")
  tag="ref-b$bits-s$seed"
  start=$EPOCHREALTIME
  python3 "$here/parity_reference.py" "$assets" "$out/$tag" --auto-scheme "$bits:$options$ref_count" --iters "$iters" \
    --nsamples "$nsamples" --seqlen "$seqlen" --batch-size 8 --seed "$seed" >"$out/$tag.log" 2>&1 ||
    { echo "$tag failed:"; tail -20 "$out/$tag.log"; continue; }
  awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$tag" 'BEGIN { printf "%s seconds %.1f\n", t, b - a }'
  python3 - "$out/$tag" <<'PY' || true
import collections, json, pathlib, sys
d = pathlib.Path(sys.argv[1])  # the reference saves into a sub-folder named after the model
config = d / "config.json" if (d / "config.json").exists() else next(d.glob("*/config.json"))
q = json.load(open(config))["quantization_config"]
bits = collections.Counter(str(v.get("bits", q["bits"])) for v in q.get("extra_config", {}).values())
print("  reference: top-level bits", q["bits"], "group", q["group_size"], "; extra_config bits:", dict(bits))
PY
  entries+=("$tag=$out/$tag")
done
echo "perplexity: name kjv-eval botchan"
python3 "$here/parity_eval.py" "$assets" "$assets/kjv-eval.tokens,$assets/botchan.tokens" "${entries[@]}" 2>"$out/eval.err" ||
  { echo "parity_eval.py failed:"; tail -5 "$out/eval.err"; exit 1; }
