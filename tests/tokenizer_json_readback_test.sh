#!/usr/bin/env bash
# CTest tokenizer_json_readback: the tokenizer.json our exporter writes for each of llama.cpp's
# byte-level BPE vocabularies, loaded by transformers (the asset step's Python environment), gives
# Hugging Face's ids on llama.cpp's test texts and ours on a long mixed text.
# usage: tokenizer_json_readback_test.sh TEST_BPE_TOKENIZER ASSETS_DIR WORK_DIR
set -euo pipefail
binary=$1 assets=$2 work=$3
# shellcheck source=/dev/null
source "$(dirname "$0")/../scripts/asset-python.sh"
require_asset_python tokenizer_json_readback "$assets" 'transformers, tokenizers'
rm -rf "$work" && mkdir -p "$work"
AUTOROUND_TOKENIZER_JSON_OUT=$work "$binary" --test-case="tokenizer.json exported*"
"$python" "$(dirname "$0")/../scripts/check_tokenizer_json.py" "$work" "$assets"
rm -rf "$work"
