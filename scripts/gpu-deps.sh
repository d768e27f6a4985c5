#!/usr/bin/env bash
# Copy the header-only dependencies the GPU tests need into .deps/ (ignored by git) so that they
# travel to a GPU machine that has no Debian packages: Eigen, doctest, nlohmann/json.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .deps && mkdir -p .deps
cp -r /usr/include/eigen3 /usr/include/doctest /usr/include/nlohmann .deps/
du -sh .deps
