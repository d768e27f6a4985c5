#!/usr/bin/env bash
# CTest's cli_formats: `autoround quantize` asked for Hugging Face and GGUF formats at once runs
# one tuning pass per distinct scheme and every file it writes holds tuned values; the GGUF files
# have the size llama-quantize's files of the same type have (tests/fixtures/llama_quantize_types.json).
# usage: cli_formats_test.sh AUTOROUND ASSETS_DIR FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 assets=$2 fixtures=$3 work=$4
if [ ! -f "$assets/smollm2-135m-instruct-q4_1.gguf" ]; then
  echo "cli_formats: assets missing (scripts/fetch-assets.sh)"
  if [ -n "${CI:-}" ]; then exit 1; else exit 77; fi
fi
rm -rf "$work"
# W4G32 sym is what Q4_0 stores: auto_gptq and gguf:q4_0 share a pass; q4_k_m and its alias q4_k share another
# (the search's least-squares refits on: the report says so)
"$autoround" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
  --bits 4 --group-size 32 --sym --iters 1 --nsamples 2 --seqlen 32 --batch-size 2 --clip-refits 2 \
  --format auto_gptq,gguf:q4_k_m,gguf:q4_0,gguf:q4_k --output "$work/out" 2>/dev/null >"$work.log"
python3 - "$work/out" "$fixtures/llama_quantize_types.json" <<'PY'
import json, os, sys
out, fixture = sys.argv[1], json.load(open(sys.argv[2]))
report = json.load(open(os.path.join(out, "quantization_report.json")))
assert report["clip_init"] == "search" and report["clip_refits"] == 2 and report["clip_magnitude"] is False, report
# a Hugging Face format among them: the reference's learning rate and clamp, the clipping grid
assert report["clip_sym"] == "grid" and report["clip_ceiling"] == 1 and report["lr"] == 0, report
runs = [sorted(run["formats"]) for run in report["runs"]]
assert runs == [["auto_gptq", "gguf:q4_0"], ["gguf:q4_k", "gguf:q4_k_m"]], runs
for run in report["runs"]:
    for name, entry in run["formats"].items():
        if not name.startswith("gguf:"):
            assert entry["float16_layers"] == [], entry["float16_layers"]
            continue
        assert entry["tensors_with_tuned_values"] == 30 * 7, (name, entry)
        kind = name[5:].replace("q4_k", "q4_k_m") if name == "gguf:q4_k" else name[5:]
        size = os.path.getsize(os.path.join(out, entry["directory"], f"model-{name[5:]}.gguf"))
        assert size == fixture["types"][kind]["bytes"], (name, size, fixture["types"][kind]["bytes"])
print("cli_formats: 2 tuning passes, every layer of every file tuned, GGUF sizes = llama-quantize's")
PY
# GGUF only: the GGUF defaults (scale-grid search up to 1.25, lr 0.001), unless given
"$autoround" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
  --iters 1 --nsamples 2 --seqlen 32 --batch-size 2 --format gguf:q4_0 --output "$work/gguf" 2>/dev/null >"$work.log"
"$autoround" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
  --iters 1 --nsamples 2 --seqlen 32 --batch-size 2 --format gguf:q4_0 --clip-sym grid --lr 0.004 --output "$work/given" \
  2>/dev/null >"$work.log"
python3 - "$work" <<'PY'
import json, os, sys
gguf = json.load(open(os.path.join(sys.argv[1], "gguf", "quantization_report.json")))
assert gguf["clip_sym"] == "scales" and abs(gguf["clip_ceiling"] - 1.25) < 1e-6 and abs(gguf["lr"] - 0.001) < 1e-6, gguf
given = json.load(open(os.path.join(sys.argv[1], "given", "quantization_report.json")))
assert given["clip_sym"] == "grid" and abs(given["lr"] - 0.004) < 1e-6, given
print("cli_formats: GGUF-only runs default to the scale grid and lr 0.001; given flags win")
PY
rm -rf "$work" "$work.log"
