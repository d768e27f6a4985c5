#!/usr/bin/env bash
# Real model size on the GPU machine (docs/speed.md "Llama-3-8B shape on one H200"): a synthetic
# Llama-3-8B-shaped checkpoint (scripts/make_synthetic_llama.py: RANDOM bf16 weights, time and
# memory only) quantized end to end to auto_round W4G128 by autoround --device cuda and by the
# reference auto-round 0.16.1 (scripts/reference_quantize.py) on the same calibration windows.
# Each run prints one row: | label | wall | peak host RSS | peak GPU memory | exit | (scripts/measure.py);
# the run's whole output (progress included) goes to WORK/ours-LAYERS.log or reference-LAYERS.log.
#
# usage: scripts/synthetic-8b.sh WORK make LAYERS
#        scripts/synthetic-8b.sh WORK ours LAYERS NSAMPLES SEQLEN ITERS [autoround flags...]
#        scripts/synthetic-8b.sh WORK reference LAYERS NSAMPLES SEQLEN ITERS
# env: AUTOROUND (default build/tools/autoround), PYTHON (default python3),
#      SHAPE=8b (default: Llama-3-8B) or 70b (Llama-3-70B: hidden 8192, intermediate 28672,
#      64 heads, 8 KV heads; each layer is 1.7 GB of bf16, so 2-4 layers fit a 64 GB disk)
#      or 30b-a3b (Qwen3-30B-A3B: qwen3_moe, hidden 2048, 32 heads of 128, 4 KV heads, 128 experts
#      of intermediate 768, top 8; each layer is 1.2 GB of bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$1 phase=$2 layers=$3
shape=${SHAPE:-8b}
case $shape in
  8b) shape_args=() ;;
  70b) shape_args=(--hidden 8192 --intermediate 28672 --heads 64 --kv-heads 8) ;;
  30b-a3b) shape_args=(--hidden 2048 --intermediate 6144 --heads 32 --kv-heads 4 --head-dim 128 --experts 128 --top-k 8
                       --expert-intermediate 768 --vocab 151936) ;;
  *) echo "unknown SHAPE $shape (8b, 70b or 30b-a3b)" >&2; exit 2 ;;
esac
model=$work/llama$shape-$layers
autoround=${AUTOROUND:-build/tools/autoround}
python=${PYTHON:-python3}
case $phase in
  make)
    [ -f "$model/config.json" ] || "$python" scripts/make_synthetic_llama.py "$model" --layers "$layers" "${shape_args[@]}"
    ;;
  ours)
    n=$4 l=$5 i=$6
    shift 6
    rm -rf "$work/ours-$layers" "$work/ours-$layers.resume"
    "$python" scripts/measure.py "ours $layers layers, $n x $l, $i iters" -- \
      "$autoround" quantize --model "$model" --calibration "$model/calib.tokens" --output "$work/ours-$layers" \
      --bits 4 --group-size 128 --nsamples "$n" --seqlen "$l" --iters "$i" --device cuda --format auto_round "$@" \
      > "$work/ours-$layers.log" 2>&1
    grep -E "^\| ours|^quantized|^measure.py" "$work/ours-$layers.log"
    ;;
  reference)
    n=$4 l=$5 i=$6
    rm -rf "$work/reference-$layers"
    "$python" scripts/measure.py "reference $layers layers, $n x $l, $i iters" -- \
      "$python" scripts/reference_quantize.py "$model" "$model/calib.tokens" "$work/reference-$layers" \
      --nsamples "$n" --seqlen "$l" --iters "$i" > "$work/reference-$layers.log" 2>&1
    grep -E "^\| reference|reference seconds|^measure.py" "$work/reference-$layers.log"
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
