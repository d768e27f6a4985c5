#!/usr/bin/env bash
# CTest's export_readback: examples/export_formats writes the real model in every format, then
# scripts/check_exports.py reads the outputs with the reference tools (gguf-py, safetensors,
# tokenizers) from the asset step's Python environment. Without that environment: skipped
# (exit 77) outside CI, failed in CI.
# usage: export_readback_test.sh EXPORT_FORMATS_BINARY ASSETS_DIR WORK_DIR
set -euo pipefail
binary=$1 assets=$2 work=$3
# shellcheck source=/dev/null
source "$(dirname "$0")/asset-python.sh"
require_asset_python export_readback "$assets" 'gguf, safetensors, tokenizers'
"$binary" --model "$assets/smollm2-135m-6l.gguf" --output "$work" --windows 2  # the asset cut to 6 blocks
"$python" "$(dirname "$0")/check_exports.py" "$work" "$assets"
rm -rf "$work"
