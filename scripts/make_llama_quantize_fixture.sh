#!/usr/bin/env bash
# tests/fixtures/llama_quantize_types.json: for every GGUF file type we write, the block type
# llama-quantize itself gives each tensor of the asset model and the size of the file it writes
# (tests/test_gguf_mix.cpp compares ours to both); llama_quantize_types_short.json: the same for
# the asset cut to 6 blocks (tests/cli_formats_test.sh); llama_quantize_types_synthetic.json: the types
# on synthetic 32- and 80-layer models with k-quant-sized rows (make_llama_quantize_synthetic.py). No importance matrix; the asset is Q4_1, so
# --allow-requantize (it dequantizes, as we do).
# usage: scripts/make_llama_quantize_fixture.sh LLAMA_BIN_DIR [ASSETS=~/.cache/autoround-cpp]
#        (LLAMA_BIN_DIR: scripts/build-llama-cpp.sh's build/bin)
set -euo pipefail
bin=$1
assets=${2:-$HOME/.cache/autoround-cpp}
python=$assets/pyenv/bin/python   # has gguf-py (scripts/fetch-assets.sh)
fixtures=$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures
out=$fixtures/llama_quantize_types.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fixture() {  # fixture MODEL OUT.json: every type's file from MODEL
  local model=$1 json=$2
  rm -f "$work"/*.gguf
  for type in q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k; do
    "$bin/llama-quantize" --allow-requantize "$model" "$work/$type.gguf" "${type^^}" 2 >"$work/$type.log" 2>&1 ||
      { cat "$work/$type.log"; exit 1; }
  done
  # gguf:mxfp4: llama-quantize's MXFP4_MOE (dense tensors Q8_0) with every block linear overridden to mxfp4
  "$bin/llama-quantize" --allow-requantize --tensor-type 'attn_(q|k|v|output)=mxfp4' --tensor-type 'ffn_(gate|up|down)=mxfp4' \
    "$model" "$work/mxfp4.gguf" MXFP4_MOE 2 >"$work/mxfp4.log" 2>&1 || { cat "$work/mxfp4.log"; exit 1; }
  "$python" - "$work" "$json" "$(basename "$model")" <<'PY'
import json, os, sys
from gguf import GGUFReader
work, out, source = sys.argv[1:]
fixture = {"made_by": "llama-quantize of llama.cpp vendored in llama-cpp-python 0.3.36 (scripts/make_llama_quantize_fixture.sh)",
           "source": source, "types": {}}
for name in sorted(f[:-5] for f in os.listdir(work) if f.endswith(".gguf")):
    path = os.path.join(work, name + ".gguf")
    reader = GGUFReader(path)
    fixture["types"][name] = {"bytes": os.path.getsize(path),
                              "tensors": {t.name: t.tensor_type.name for t in reader.tensors}}
with open(out, "w") as f:
    json.dump(fixture, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote", out)
PY
}
fixture "$assets/smollm2-135m-instruct-q4_1.gguf" "$out"
# the model cut to 6 blocks (scripts/fetch-assets.sh), which tests/cli_formats_test.sh quantizes
fixture "$assets/smollm2-135m-6l.gguf" "$fixtures/llama_quantize_types_short.json"
# the same rules on synthetic shapes where every row holds k-quant blocks (8B- and 70B-like)
"$python" "$(dirname "$0")/make_llama_quantize_synthetic.py" "$bin/llama-quantize" \
  "$(dirname "$out")/llama_quantize_types_synthetic.json" "$work"
