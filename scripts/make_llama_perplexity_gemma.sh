#!/usr/bin/env bash
# Write tests/fixtures/llama_perplexity_gemma3.json: llama.cpp's own llama-perplexity of the Gemma 3
# asset (gemma-3-270m-q4_k_m.gguf, scripts/fetch-assets.sh) on kjv-eval.txt, -c 512, 2 chunks:
# the independent expectation tests/test_real_gemma.cpp compares our evaluation of the file with.
# scripts/make_llama_perplexity_mxfp4.sh uses it for another file (MODEL, DESCRIPTION).
# usage: scripts/make_llama_perplexity_gemma.sh LLAMA_BIN_DIR ASSETS_DIR OUT.json [MODEL [DESCRIPTION]]
#        (LLAMA_BIN_DIR: scripts/build-llama-cpp.sh's build/bin, from the llama-cpp-python 0.3.36 sdist)
set -euo pipefail
bin=$1 assets=$2 out=$3
model=${4:-$assets/gemma-3-270m-q4_k_m.gguf}
description=${5:-$(basename "$model")}
log=$("$bin/llama-perplexity" -m "$model" -f "$assets/kjv-eval.txt" -c 512 --chunks 2 -t 2 2>&1)
ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' <<<"$log")
[ -n "$ppl" ] || { echo "$log" | tail -20; exit 1; }
cat >"$out" <<JSON
{
  "tool": "llama-perplexity (llama.cpp vendored in llama-cpp-python 0.3.36)",
  "model": "$description",
  "model_sha256": "$(sha256sum "$model" | cut -d' ' -f1)",
  "text": "kjv-eval.txt",
  "context": 512,
  "chunks": 2,
  "perplexity": $ppl
}
JSON
cat "$out"
