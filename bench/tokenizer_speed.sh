#!/usr/bin/env bash
# Tokenizing speed, ours against Hugging Face tokenizers, single-threaded, same text, same run
# (docs/speed.md "Tokenizer"): the asset model's byte-level BPE on botchan.txt repeated to 10 MB.
# usage: bench/tokenizer_speed.sh BUILD_DIR [ASSETS=~/.cache/autoround-cpp] [MB=10]
set -euo pipefail
build=$1
assets=${2:-$HOME/.cache/autoround-cpp}
mb=${3:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
echo "| tokenizer | text | tokens | time | speed |"
echo "|---|---|---|---|---|"
"$build/bench/bench_tokenizer" "$assets/smollm2-135m-instruct-q4_1.gguf" "$assets/botchan.txt" "$mb"
"$assets/pyenv/bin/python" "$here/scripts/hf_tokenize_speed.py" "$assets/smollm2-135m-instruct-q4_1.gguf" "$assets/botchan.txt" "$mb"
