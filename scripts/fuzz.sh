#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang (ASan + UBSan) and run each for SECONDS on a copy of
# its seed corpus. Usage: scripts/fuzz.sh [BUILD_DIR=build-fuzz] [SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${2:-20}
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAUTOROUND_BUILD_FUZZERS=ON -DAUTOROUND_BUILD_TESTS=OFF -DAUTOROUND_BUILD_EXAMPLES=OFF \
  -DAUTOROUND_BUILD_BENCH=OFF -DAUTOROUND_BUILD_TOOLS=OFF >/dev/null
cmake --build "$build" -j2
for format in safetensors gguf; do
  work=$(mktemp -d)
  mkdir -p "$work/corpus"
  cp tests/fuzz/corpus/$format/* "$work/corpus/"
  echo "fuzzing the $format reader for $seconds s"
  log="$work/fuzz.log"
  if ! "$build/tests/fuzz/fuzz_$format" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
       -artifact_prefix="$work/" "$work/corpus" >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz_$format: finding (input saved under $work)"
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$log"
  rm -rf "$work"
done
