#!/usr/bin/env bash
# Build and run the CUDA tests and benchmarks on a machine with a GPU (the lent device machine:
# nvcc, g++ and PyTorch, but no Debian -dev packages, so the Eigen, doctest and nlohmann/json
# headers travel in .deps/, which scripts/gpu-deps.sh fills here), then time the reference's
# layer step in PyTorch on the same shapes (scripts/torch_layer_step.py), when torch is there.
# usage: scripts/gpu-tests.sh [ARCH=90]      (writes build-gpu/)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
deps=.deps
out=build-gpu
mkdir -p $out
cuda_include="$(dirname "$(command -v nvcc)")/../include"
includes="-Iinclude -Itests -I$deps/eigen3 -I$deps"
nvcc_flags="-std=c++20 -O2 --fmad=false --expt-relaxed-constexpr -diag-suppress=20012 -arch=sm_$arch $includes"
cxx_flags="-std=c++20 -O2 -ffp-contract=off -fopenmp $includes -I$cuda_include"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
for gpu in qdq layer_run; do nvcc $nvcc_flags -c tests/cuda/${gpu}_gpu.cu -o $out/${gpu}_gpu.o; done
for t in qdq layer_run; do g++ $cxx_flags -c tests/cuda/test_cuda_$t.cpp -o $out/test_cuda_$t.o; done
nvcc -arch=sm_$arch $out/qdq_gpu.o $out/test_cuda_qdq.o -o $out/test_cuda_qdq -Xcompiler -fopenmp
nvcc -arch=sm_$arch $out/layer_run_gpu.o $out/qdq_gpu.o $out/test_cuda_layer_run.o -o $out/test_cuda_layer_run -lcublas -Xcompiler -fopenmp
nvcc $nvcc_flags bench/bench_cuda_qdq.cu -o $out/bench_cuda_qdq
nvcc $nvcc_flags bench/bench_cuda_layer_step.cu -o $out/bench_cuda_layer_step -lcublas
$out/test_cuda_qdq
$out/test_cuda_layer_run
$out/bench_cuda_qdq
$out/bench_cuda_layer_step
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 scripts/torch_layer_step.py
else
  echo "PyTorch with CUDA not found: no reference timing"
fi
