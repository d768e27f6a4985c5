#!/usr/bin/env bash
# CTest's cli_gemma: a tiny random Gemma 3 checkpoint (gemma3_text: scripts/make_tiny_gemma.py)
# evaluates with `autoround eval`; `autoround quantize` tunes it on the CPU (GeGLU, sandwich norms,
# sliding windows in the block loss) into auto_round: every block's seven layers beat round-to-
# nearest, the checkpoint keeps Gemma's norms as Gemma stores them (w of its 1 + w, float16 of the
# source's values, not 1 + w), `autoround eval` of the checkpoint gives the run's own "after"
# perplexity. (`--device cuda` refuses Gemma by name before tuning; that needs a GPU to reach.)
# usage: cli_gemma_test.sh AUTOROUND SCRIPTS_DIR WORK_DIR
set -euo pipefail
autoround=$1 scripts=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
python3 "$scripts/make_tiny_gemma.py" "$work/model"
"$autoround" eval --model "$work/model" --text "$work/model/text.tokens" >"$work/eval.log" 2>&1 ||
  { echo "cli_gemma: eval failed"; cat "$work/eval.log"; exit 1; }
grep -Eq "^perplexity [0-9]+\.[0-9]+ over 2044 tokens" "$work/eval.log" || { echo "cli_gemma: no perplexity"; cat "$work/eval.log"; exit 1; }
"$autoround" quantize --model "$work/model" --calibration "$work/model/text.tokens" --output "$work/out" --format auto_round \
  --nsamples 8 --seqlen 64 --iters 50 --batch-size 4 --bits 2 --group-size 32 --eval "$work/model/text.tokens" --eval-windows 2 \
  >"$work/quantize.log" 2>&1 || { echo "cli_gemma: quantize failed"; cat "$work/quantize.log"; exit 1; }
"$autoround" eval --model "$work/out/auto_round" --text "$work/model/text.tokens" --windows 2 >"$work/eval_out.log" 2>&1 ||
  { echo "cli_gemma: eval of the checkpoint failed"; cat "$work/eval_out.log"; exit 1; }
python3 - "$work/model" "$work/out" "$work/eval_out.log" "$(dirname "$0")/support" <<'PY' || { cat "$work/quantize.log"; exit 1; }
import json, re, sys
src, out, eval_log = sys.argv[1:4]
sys.path.insert(0, sys.argv[4])
from safetensors_file import read
report = json.load(open(out + "/quantization_report.json"))
blocks = report["runs"][0]["blocks"]
assert len(blocks) == 3, blocks
for b in blocks:
    assert b["quantized_layers"] == 7, b
    assert b["best_loss"] < 0.8 * b["rtn_loss"], b
# norms: float16 of the source's w (Gemma computes with 1 + w), every one of them
sh, sv, _ = read(src + "/model.safetensors")
qh, qv, _ = read(out + "/auto_round/model.safetensors")
norms = [n for n in sh if n.endswith("norm.weight")]
assert len(norms) == 1 + 3 * 6, norms
for n in norms:
    assert qh[n]["dtype"] == "F16", (n, qh[n])
    worst = max(abs(a - b) for a, b in zip(sv(n), qv(n)))
    assert worst <= 1e-3 * max(abs(a) for a in sv(n)), (n, worst)
config = json.load(open(out + "/auto_round/config.json"))
assert config["model_type"] == "gemma3_text" and config["layer_types"][2] == "full_attention", config
after = report["runs"][0]["perplexity_after"]
ours = float(re.search(r"^perplexity ([0-9.]+) over", open(eval_log).read(), re.M).group(1))
assert abs(ours - after) <= 1e-3 * after, (ours, after)
print("cli_gemma: %d norms as Gemma stores them; perplexity %.3f before, %.3f after, %.3f read back; losses %s" %
      (len(norms), report["perplexity_before"], after, ours, [round(b["best_loss"] / b["rtn_loss"], 3) for b in blocks]))
PY
echo "cli_gemma: ok"
rm -rf "$work"
