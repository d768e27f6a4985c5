#!/usr/bin/env bash
# Build and run the CUDA tests and benchmarks on a machine with a GPU (the lent device machine:
# nvcc, g++ and PyTorch, but no Debian -dev packages, so the Eigen, doctest and nlohmann/json
# headers, and the real block the GPU test compares on, travel in .deps/, which
# scripts/gpu-deps.sh fills here), then time the reference's layer and block steps in PyTorch
# on the same shapes (scripts/torch_layer_step.py, scripts/torch_block_step.py), when torch is there.
# usage: scripts/gpu-tests.sh [ARCH=90] [all|tests|bench]   (writes build-gpu/; the tests take
#        about 5 minutes on an H100 machine, the benchmarks 4; FP32_WHOLE_BLOCK=1 also times
#        whole-block tuning with float32 GEMMs, about 100 s more)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
what=${2:-all}
deps=.deps
out=build-gpu
mkdir -p $out
cuda_include="$(dirname "$(command -v nvcc)")/../include"
includes="-Iinclude -Itests -I$deps/eigen3 -I$deps"
# as CMake's autoround::cuda target: Eigen without SIMD and with nvcc's alignment in every file
# of a program that mixes nvcc and g++ objects (see CMakeLists.txt)
eigen="-DEIGEN_DONT_VECTORIZE -DEIGEN_MAX_ALIGN_BYTES=16 -DEIGEN_MAX_STATIC_ALIGN_BYTES=16 -DEIGEN_MALLOC_ALREADY_ALIGNED=0"
nvcc_flags="-std=c++20 -O2 --fmad=false --expt-relaxed-constexpr -diag-suppress=20012 -arch=sm_$arch -Xcompiler=-fopenmp $eigen $includes"
cxx_flags="-std=c++20 -O2 -ffp-contract=off -fopenmp $eigen $includes -I$cuda_include"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
pids=()
for gpu in qdq layer_run block_run; do nvcc $nvcc_flags -c tests/cuda/${gpu}_gpu.cu -o $out/${gpu}_gpu.o & pids+=($!); done
for t in qdq layer_run block_run; do g++ $cxx_flags -c tests/cuda/test_cuda_$t.cpp -o $out/test_cuda_$t.o & pids+=($!); done
for b in qdq layer_step block_step; do nvcc $nvcc_flags bench/bench_cuda_$b.cu -o $out/bench_cuda_$b -lcublas & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
nvcc -arch=sm_$arch $out/qdq_gpu.o $out/test_cuda_qdq.o -o $out/test_cuda_qdq -Xcompiler -fopenmp
for t in layer_run block_run; do
  nvcc -arch=sm_$arch $out/${t}_gpu.o $out/qdq_gpu.o $out/test_cuda_$t.o -o $out/test_cuda_$t -lcublas -Xcompiler -fopenmp
done
if [ "$what" != bench ]; then
  $out/test_cuda_qdq
  $out/test_cuda_layer_run
  AUTOROUND_REAL_BLOCK=$deps/real_block.safetensors $out/test_cuda_block_run
fi
[ "$what" = tests ] && exit 0
$out/bench_cuda_qdq
$out/bench_cuda_layer_step
$out/bench_cuda_block_step 2048 128 "${FP32_WHOLE_BLOCK:-0}"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 scripts/torch_layer_step.py
  python3 scripts/torch_block_step.py
else
  echo "PyTorch with CUDA not found: no reference timing"
fi
