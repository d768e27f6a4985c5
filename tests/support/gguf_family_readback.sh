#!/usr/bin/env bash
# The GGUF half of a family's CLI test (cli_glm, cli_phi3, cli_gpt_oss): `autoround quantize` from
# the GGUF that llama.cpp's converter wrote of the family's fixture into gguf:q8_0 and
# gguf:q4_k_m; TUNED of the tensors in each from tuned codes (empty: not checked); the source and
# both files read back by `autoround eval`: q8_0 within 1% of the source (and not equal to it:
# quantized), q4_k_m within Q4_BOUND (default 10%); Q8_BOUND (default 1%) where a tiny fixture's
# Q8_0 embedding alone moves it more.
# usage: gguf_family_readback.sh NAME AUTOROUND SOURCE.gguf TOKENS WORK_DIR [TUNED] [Q4_BOUND] [Q8_BOUND]
set -euo pipefail
name=$1 autoround=$2 source=$3 tokens=$4 work=$5 tuned=${6:-} q4_bound=${7:-0.1} q8_bound=${8:-0.01}
"$autoround" quantize --model "$source" --calibration "$tokens" --output "$work/gguf" --format gguf:q8_0,gguf:q4_k_m \
  --nsamples 3 --seqlen 16 --iters 5 --batch-size 1 >"$work/gguf.log" 2>&1 ||
  { echo "$name: quantize from GGUF failed"; cat "$work/gguf.log"; exit 1; }
if [ -n "$tuned" ]; then
  for f in q8_0 q4_k_m; do
    grep -q "^gguf:$f: $tuned of " "$work/gguf.log" || { echo "$name: gguf:$f does not hold $tuned tensors from tuned codes"; cat "$work/gguf.log"; exit 1; }
  done
fi
for f in "$source" "$work/gguf/gguf-q8_0/model-q8_0.gguf" "$work/gguf/gguf-q4_k_m/model-q4_k_m.gguf"; do
  "$autoround" eval --model "$f" --text "$tokens" --context 16 >>"$work/gguf-eval.log" 2>&1 ||
    { echo "$name: eval of $f failed"; cat "$work/gguf-eval.log"; exit 1; }
done
python3 - "$name" "$work/gguf-eval.log" "$q4_bound" "$q8_bound" <<'PY'
import re, sys
name, log, q4_bound, q8_bound = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
src, q8, q4 = [float(v) for v in re.findall(r"^perplexity ([0-9.]+) over", open(log).read(), re.M)]
assert abs(q8 / src - 1) < q8_bound and q8 != src and abs(q4 / src - 1) < q4_bound, (src, q8, q4)
print("%s: GGUF source %.4f, its gguf:q8_0 %.4f, gguf:q4_k_m %.4f (our reader)" % (name, src, q8, q4))
PY
