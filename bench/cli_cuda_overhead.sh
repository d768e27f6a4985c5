#!/usr/bin/env bash
# Does building the CUDA backend into `autoround` cost the CPU path anything? (issue: the program
# built where nvcc is found once tuned 3-4.6x slower on the CPU.) Builds the program a second time
# with -DAUTOROUND_CUDA=OFF, then runs the same CPU quantization with both, interleaved
# (A B A B ...) so that drift hits both alike, and prints tuning seconds (whole model: every
# block's tuning steps; quantization_report.json) and their ratio.
# usage: bench/cli_cuda_overhead.sh [BUILD=build] [ROUNDS=3]    (ITERS=20 NSAMPLES=16 SEQLEN=128)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build} rounds=${2:-3}
nocuda=${build}-nocuda
grep -q "AUTOROUND_CUDA:BOOL=ON" "$build/CMakeCache.txt" || { echo "$build is not a CUDA-enabled build"; exit 1; }
cmake -S . -B "$nocuda" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAUTOROUND_CUDA=OFF -DAUTOROUND_BUILD_TESTS=OFF \
      -DAUTOROUND_BUILD_EXAMPLES=OFF -DAUTOROUND_BUILD_BENCH=OFF >/dev/null
cmake --build "$nocuda" --target autoround_cli >/dev/null
cmake --build "$build" --target autoround_cli >/dev/null
assets=${AUTOROUND_ASSETS:-$HOME/.cache/autoround-cpp}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {  # binary -> tuning seconds
  "$1" quantize --model "$assets/smollm2-135m-instruct-q4_1.gguf" --calibration "$assets/kjv-calib.tokens" \
    --iters "${ITERS:-20}" --nsamples "${NSAMPLES:-16}" --seqlen "${SEQLEN:-128}" --output "$work/out" --overwrite >/dev/null 2>&1
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'])" "$work/out/quantization_report.json"
}
echo "| round | CUDA built in (s) | -DAUTOROUND_CUDA=OFF (s) | ratio |"
echo "|---|---|---|---|"
sum_a=0 sum_b=0
for r in $(seq 1 "$rounds"); do
  a=$(run "$build/tools/autoround") b=$(run "$nocuda/tools/autoround")
  sum_a=$(python3 -c "print($sum_a + $a)") sum_b=$(python3 -c "print($sum_b + $b)")
  printf '| %d | %.1f | %.1f | %.3f |\n' "$r" "$a" "$b" "$(python3 -c "print($a / $b)")"
done
printf '| all | %.1f | %.1f | **%.3f** |\n' "$sum_a" "$sum_b" "$(python3 -c "print($sum_a / $sum_b)")"
ldd "$build/tools/autoround" | grep -q autoround_cuda_pipeline && echo "(the first program links libautoround_cuda_pipeline.so)"
