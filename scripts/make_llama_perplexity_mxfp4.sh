#!/usr/bin/env bash
# Write tests/fixtures/llama_perplexity_mxfp4.json: llama.cpp's own llama-perplexity of the gguf:mxfp4
# file our autoround writes from the asset at round-to-nearest (--iters 0: every block linear MXFP4
# from the weights alone, so the file does not depend on the calibration), on kjv-eval.txt, -c 512,
# 2 chunks, with the file's sha256: tests/cli_float_test.sh writes the same file, checks the
# sha256 and compares `autoround eval --llama-perplexity` of it with llama.cpp's verdict.
# usage: scripts/make_llama_perplexity_mxfp4.sh AUTOROUND LLAMA_BIN_DIR ASSETS_DIR OUT.json
#        (LLAMA_BIN_DIR: scripts/build-llama-cpp.sh's build/bin, from the llama-cpp-python 0.3.36 sdist)
set -euo pipefail
autoround=$1 bin=$2 assets=$3 out=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$autoround" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
  --format gguf:mxfp4 --iters 0 --nsamples 2 --seqlen 64 --output "$work/q" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
bash "$(dirname "$0")/make_llama_perplexity_gemma.sh" "$bin" "$assets" "$out" "$work/q/gguf-mxfp4/model-mxfp4.gguf" \
  "autoround quantize --format gguf:mxfp4 --iters 0 of smollm2-135m-instruct-q4_1.gguf"
