#!/usr/bin/env bash
# CTest's cli_formats: `autoround quantize` asked for Hugging Face and GGUF formats at once runs
# one tuning pass per distinct scheme and every file it writes holds tuned values; the GGUF files
# have the size llama-quantize's files of the same type have (tests/fixtures/llama_quantize_types_short.json).
# Files and sizes are checked on the asset cut to 6 blocks; --avg-bits's choice, judged by
# perplexity, on the whole model.
# usage: cli_formats_test.sh AUTOROUND ASSETS_DIR FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 assets=$2 fixtures=$3 work=$4
short=$assets/smollm2-135m-6l.gguf full=$assets/smollm2-135m-instruct-q4_1.gguf
if [ ! -f "$short" ] || [ ! -f "$full" ]; then
  echo "cli_formats: assets missing (scripts/fetch-assets.sh)"
  if [ -n "${CI:-}" ]; then exit 1; else exit 77; fi
fi
rm -rf "$work"
# W4G32 sym is what Q4_0 stores: auto_gptq and gguf:q4_0 share a pass; q4_k_m and its alias q4_k share another
# (the search's least-squares refits on: the report says so)
"$autoround" quantize --model "$short" --calibration "$assets/kjv-calib.tokens" \
  --bits 4 --group-size 32 --sym --iters 1 --nsamples 2 --seqlen 32 --batch-size 2 --clip-refits 2 \
  --format auto_gptq,gguf:q4_k_m,gguf:q4_0,gguf:q4_k --output "$work/out" 2>/dev/null >"$work.log"
python3 - "$work/out" "$fixtures/llama_quantize_types_short.json" <<'PY'
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
        assert entry["tensors_with_tuned_values"] == 6 * 7, (name, entry)
        kind = name[5:].replace("q4_k", "q4_k_m") if name == "gguf:q4_k" else name[5:]
        size = os.path.getsize(os.path.join(out, entry["directory"], f"model-{name[5:]}.gguf"))
        assert size == fixture["types"][kind]["bytes"], (name, size, fixture["types"][kind]["bytes"])
print("cli_formats: 2 tuning passes, every layer of every file tuned, GGUF sizes = llama-quantize's")
PY
# GGUF only: the GGUF defaults (scale-grid search up to 1.25, lr 0.001), unless given
"$autoround" quantize --model "$short" --calibration "$assets/kjv-calib.tokens" \
  --iters 1 --nsamples 2 --seqlen 32 --batch-size 2 --format gguf:q4_0 --output "$work/gguf" 2>/dev/null >"$work.log"
"$autoround" quantize --model "$short" --calibration "$assets/kjv-calib.tokens" \
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
# a size budget: 42 MB for q2_k (llama-quantize's is 43.1; filled within 0.6%: 43 tensors, the steps coarse), types chosen on 2 samples' sensitivities;
# two files at their own types' sizes with "mix"; refusals name the flag
model=$short
"$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.tokens" --iters 1 --nsamples 2 --seqlen 32 \
  --batch-size 2 --format gguf:q2_k --gguf-budget 42MB --budget-types q4_0,q4_k,q5_0,q6_k,q8_0 --output "$work/budget" \
  2>/dev/null >"$work.log"
"$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.tokens" --iters 0 --nsamples 2 --seqlen 32 \
  --format gguf:q2_k,gguf:q4_k_m --gguf-budget mix --budget-types q4_0,q5_0,q8_0,q4_k,q6_k --output "$work/mix" \
  2>/dev/null >"$work.log"
python3 - "$work" "$fixtures/llama_quantize_types_short.json" <<'PY'
import json, os, sys
work, fixture = sys.argv[1], json.load(open(sys.argv[2]))
report = json.load(open(os.path.join(work, "budget", "quantization_report.json")))
plan = report["gguf_budget"]["gguf:q2_k"]
size = os.path.getsize(os.path.join(work, "budget", "gguf-q2_k", "model-q2_k.gguf"))
assert size == plan["file_bytes"] and 41_750_000 < size <= 42_000_000, (size, plan["file_bytes"])
assert plan["budget_bytes"] == 42_000_000 and plan["rule_file_bytes"] == fixture["types"]["q2_k"]["bytes"], plan
assert len(plan["tensors"]) == 6 * 7 + 1 and {t["type"] for t in plan["tensors"]} <= {"Q4_0", "Q4_K", "Q5_0", "Q6_K", "Q8_0"}, plan
assert report["runs"][0]["formats"]["gguf:q2_k"]["tensors_with_tuned_values"] == 6 * 7, report["runs"][0]
assert "size budget" in report["runs"][0]["scheme"], report["runs"][0]["scheme"]
mix = json.load(open(os.path.join(work, "mix", "quantization_report.json")))
for name in ("q2_k", "q4_k_m"):
    size = os.path.getsize(os.path.join(work, "mix", f"gguf-{name}", f"model-{name}.gguf"))
    assert mix["gguf_budget"][f"gguf:{name}"]["file_bytes"] == size <= fixture["types"][name]["bytes"], name
print("cli_formats: --gguf-budget files fit their budgets, hold the chosen types, tuned")
PY
for bad in "--format gguf:q2_k,gguf:q4_0 --gguf-budget 80MB|one gguf:TYPE at a time" \
           "--format auto_round --gguf-budget 80MB|needs a --format gguf:TYPE" \
           "--format gguf:q2_k --gguf-budget 10MB|the file takes at least" \
           "--format gguf:q2_k --gguf-budget 80MB --budget-types q4_k,iq1_s|'IQ1_S' is not one of"; do
  flags=${bad%%|*} expected=${bad#*|}
  # shellcheck disable=SC2086
  if "$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.tokens" --iters 0 --nsamples 2 --seqlen 32 \
       $flags --output "$work/bad" 2>"$work.err" >/dev/null; then
    echo "cli_formats: $flags was accepted"; exit 1
  fi
  grep -q -- "$expected" "$work.err" || { echo "cli_formats: $flags: expected '$expected', got:"; cat "$work.err"; exit 1; }
done
echo "cli_formats: --gguf-budget's refusals name the problem"
# --avg-bits 3 among W2A16 / W4A16 (weights' bits alone): the checkpoint holds the chosen schemes,
# and at plain round to nearest it scores better than the same average spent on every other block
# (one 512-token window: over two, 111.5 against 1241.9 on 2026-12-06)
"$autoround" quantize --model "$full" --calibration "$assets/kjv-calib.tokens" --iters 0 --clip-init unit --nsamples 4 --seqlen 256 \
  --avg-bits 3 --options W2A16,W4A16 --ignore-scale-zp-bits --format auto_round --eval "$assets/kjv-eval.tokens" \
  --eval-windows 1 --output "$work/avg" 2>/dev/null >"$work.log"
"$autoround" quantize --model "$full" --calibration "$assets/kjv-calib.tokens" --iters 0 --clip-init unit --nsamples 4 --seqlen 256 \
  --scheme W2A16 --layer 'model\.layers\.[0-9]*[02468]\.=4:128:sym' --format auto_round --eval "$assets/kjv-eval.tokens" \
  --eval-windows 1 --output "$work/alternate" 2>/dev/null >"$work.log"
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
report = json.load(open(os.path.join(work, "avg", "quantization_report.json")))
plan = report["avg_bits"]
assert 2.9 < plan["chosen"] <= 3.0 and plan["scale_zp_bits_counted"] is False, plan
four = {l["name"] for l in plan["layers"] if l["scheme"] == "W4A16"}
assert len(plan["layers"]) == 210 and 0 < len(four) < 210, len(four)
config = json.load(open(os.path.join(work, "avg", "auto_round", "config.json")))["quantization_config"]
assert config["bits"] == 2 and config["group_size"] == 128 and config["sym"] is True, config
extra = {name for name, e in config.get("extra_config", {}).items() if e.get("bits") == 4}
assert extra == four, (len(extra), len(four))
chosen = report["runs"][0]["perplexity_after"]
alternate = json.load(open(os.path.join(work, "alternate", "quantization_report.json")))["runs"][0]["perplexity_after"]
assert chosen < alternate, (chosen, alternate)
print(f"cli_formats: --avg-bits 3: {len(four)} of 210 layers at W4A16, perplexity {chosen:.2f} against {alternate:.2f} "
      "with every other block at W4A16")
PY
rm -rf "$work" "$work.log" "$work.err"
