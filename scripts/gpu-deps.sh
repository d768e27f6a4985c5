#!/usr/bin/env bash
# Fill .deps/ (ignored by git) with what scripts/gpu-tests.sh needs on a GPU machine that has no
# Debian packages and no assets: the header-only dependencies (Eigen, doctest, nlohmann/json)
# and one real block of the asset model with its real calibration inputs
# (.deps/real_block.safetensors, written by build/tests/make_real_block; about 24 MB).
# usage: scripts/gpu-deps.sh [BUILD_DIR=build]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rm -rf .deps && mkdir -p .deps
cp -r /usr/include/eigen3 /usr/include/doctest /usr/include/nlohmann .deps/
if cmake --build "$build" --target make_real_block >/dev/null; then
  "$build/tests/make_real_block" .deps/real_block.safetensors
else
  echo "gpu-deps: make_real_block not built (configure with nvcc present): the real-block GPU test will be skipped"
fi
du -sh .deps
