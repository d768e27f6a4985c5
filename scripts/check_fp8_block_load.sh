#!/usr/bin/env bash
# FP8_BLOCK checkpoints we write, loaded by transformers itself: a random Llama-shaped model whose
# dimensions are multiples of 128 (transformers' FineGrainedFP8 infers the tile from the scale grid,
# compressed-tensors quantizes inputs in whole groups of 128), tuned with --scheme FP8_BLOCK and
# written as fp8 (quant_method "fp8": FineGrainedFP8) and llm_compressor (compressed-tensors).
#   1. llm_compressor, inputs quantized: transformers + compressed-tensors against `autoround eval`
#      (compressed-tensors rounds the float32 tile scales to bfloat16 on load and quantizes inputs
#      with a bfloat16 scale: close, not bit for bit);
#   2. fp8 and llm_compressor as weights alone: on a CPU transformers dequantizes FineGrainedFP8
#      weights and runs plain Linear layers, so both are scored against our evaluation of weight-only
#      twins (the same files, config without input quantization).
# usage: scripts/check_fp8_block_load.sh AUTOROUND PYTHON WORK   (PYTHON: torch, transformers 5.17,
#        compressed-tensors 0.20; about a minute on 2 cores)
set -euo pipefail
autoround=$1 python=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
"$python" "$here/make_synthetic_llama.py" "$work/model" --layers 2 --hidden 256 --intermediate 512 --heads 4 --kv-heads 2 \
  --vocab 1000 --tokens 20000 >/dev/null
tokens=$work/model/calib.tokens
"$autoround" quantize --model "$work/model" --calibration "$tokens" --scheme FP8_BLOCK --nsamples 16 --seqlen 128 --iters 20 \
  --format fp8,llm_compressor --output "$work/q" >"$work/quantize.log" 2>&1 || { cat "$work/quantize.log"; exit 1; }
twin() {  # twin SRC DST: the same files, the config without input quantization
  mkdir -p "$2"
  for f in "$1"/*; do [ "$(basename "$f")" = config.json ] || ln -s "$(readlink -f "$f")" "$2/"; done
  "$python" - "$1/config.json" "$2/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
qc = c["quantization_config"]
if qc["quant_method"] == "fp8":
    qc["activation_scheme"] = "static"  # no dynamic inputs (a CPU dequantizes either way)
else:
    for g in qc["config_groups"].values():
        g["input_activations"] = None
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
}
twin "$work/q/fp8" "$work/fp8-weights"
twin "$work/q/llm_compressor" "$work/ct-weights"
ours() { "$autoround" eval --model "$work/model" --quantized "$1" --text "$tokens" --context 128 --windows 8 2>&1 | awk -v d="$1" '$0 ~ d { print $2 }'; }
a=$(ours "$work/q/llm_compressor") b=$(ours "$work/fp8-weights") c=$(ours "$work/ct-weights")
echo "ours: llm_compressor $a, fp8 weights alone $b, llm_compressor weights alone $c"
# compressed-tensors: bfloat16 tile scales (ours float32), bfloat16 input scales: within 1%
"$python" "$here/check_transformers_load.py" "$tokens" 128 8 "$work/q/llm_compressor=$a" "$work/ct-weights=$c" --tolerance 0.01
# FineGrainedFP8: fp8 · the file's bfloat16 scale, as ours: the same weights, float32 GEMMs apart
"$python" "$here/check_transformers_load.py" "$tokens" 128 8 "$work/q/fp8=$b" --tolerance 0.001
