#!/usr/bin/env bash
# Build and run the CUDA tests and the CUDA benchmark on a machine with a GPU (the lent device
# machine: nvcc and g++, but no Debian -dev packages, so Eigen, doctest and nlohmann/json
# headers travel in .deps/, which scripts/gpu-deps.sh fills here).
# usage: scripts/gpu-tests.sh [ARCH=90]      (writes build-gpu/)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
deps=.deps
out=build-gpu
mkdir -p $out
includes="-Iinclude -Itests -I$deps/eigen3 -I$deps"
nvcc_flags="-std=c++20 -O2 --fmad=false -arch=sm_$arch $includes"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
nvcc $nvcc_flags -c tests/cuda/qdq_gpu.cu -o $out/qdq_gpu.o
g++ -std=c++20 -O2 -ffp-contract=off -fopenmp $includes -I"$(dirname "$(command -v nvcc)")/../include" \
  -c tests/cuda/test_cuda_qdq.cpp -o $out/test_cuda_qdq.o
nvcc -arch=sm_$arch $out/qdq_gpu.o $out/test_cuda_qdq.o -o $out/test_cuda_qdq -Xcompiler -fopenmp
nvcc $nvcc_flags bench/bench_cuda_qdq.cu -o $out/bench_cuda_qdq
$out/test_cuda_qdq
$out/bench_cuda_qdq
