#!/usr/bin/env bash
# CTest's cli_vlm: tiny vision-language checkpoints as transformers 5.17 saves them
# (tests/fixtures/vlm: Gemma 3, Gemma 4, LLaVA, Qwen2.5-VL) quantized by `autoround quantize` into
# auto_round as the reference does by default: the language model's blocks tuned and written
# under the checkpoint's own names (block_name_to_quantize: transformers 5's in-memory
# model.language_model.layers, which auto-round's loader matches, and the file's prefix), every tensor
# outside the language model (vision tower, projector) byte for byte the source's, config.json's
# vision_config and text_config kept; `autoround eval` reads the checkpoint back.
# usage: cli_vlm_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 fixtures=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
for family in gemma3 gemma4 llava qwen2_5_vl; do
  model=$fixtures/vlm/$family
  "$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/$family" --format auto_round \
    --nsamples 3 --seqlen 16 --iters 10 --batch-size 1 --group-size 32 >"$work/$family.log" 2>&1 ||
    { echo "cli_vlm: $family: quantize failed"; cat "$work/$family.log"; exit 1; }
  "$autoround" eval --model "$work/$family/auto_round" --text "$model/text.tokens" --context 16 >"$work/$family.eval" 2>&1 ||
    { echo "cli_vlm: $family: eval of the checkpoint failed"; cat "$work/$family.eval"; exit 1; }
  python3 - "$model" "$work/$family/auto_round" "$(dirname "$0")/support" <<'PY' || exit 1
import json, sys
src, out = sys.argv[1:3]
sys.path.insert(0, sys.argv[3])
from safetensors_file import read
sh, _, sd = read(src + "/model.safetensors")
qh, _, qd = read(out + "/model.safetensors")
config, source_config = json.load(open(out + "/config.json")), json.load(open(src + "/config.json"))
qc = config["quantization_config"]
blocks = qc["block_name_to_quantize"].split(",")
assert blocks[0] == "model.language_model.layers", qc
prefix = blocks[-1][: -len("layers")]
assert prefix in ("language_model.model.", "model.", "model.language_model."), qc
language = lambda n: n.startswith(prefix) or n in ("lm_head.weight", "language_model.lm_head.weight")
beside = [n for n in sh if not language(n)]
assert beside, "no tensor outside the language model"
for n in beside:  # vision tower and projector: byte for byte
    a, b = sh[n], qh.get(n)
    assert b is not None, n + " is missing"
    assert a["dtype"] == b["dtype"] and a["shape"] == b["shape"], (n, a, b)
    assert sd[a["data_offsets"][0]:a["data_offsets"][1]] == qd[b["data_offsets"][0]:b["data_offsets"][1]], n + " differs"
packed = [n for n in qh if n.endswith(".qweight")]
assert packed and all(n.startswith(prefix + "layers.") for n in packed), packed
assert config["vision_config"] == source_config["vision_config"]
assert config.get("text_config") == source_config.get("text_config")
assert not any(language(n) for n in qh if n not in sh and not n.endswith((".qweight", ".qzeros", ".scales"))), "stray names"
print("cli_vlm: %s: %d tensors beside the language model kept byte for byte, %d layers packed under %s" %
      (config["model_type"], len(beside), len(packed), prefix))
PY
  grep -q "^perplexity" "$work/$family.eval" || { echo "cli_vlm: $family: no perplexity"; cat "$work/$family.eval"; exit 1; }
done
echo "cli_vlm: ok"
rm -rf "$work"
