#!/usr/bin/env bash
# llama.cpp's own tools, the judges of our GGUF files (docs/accuracy.md, "GGUF through llama.cpp"):
# llama-quantize, llama-perplexity and llama-imatrix built (static, CPU) from the llama.cpp copy
# vendored in PyPI's llama-cpp-python 0.3.36 sdist. About 25 minutes on 2 cores.
# usage: scripts/build-llama-cpp.sh [DIR=~/.cache/autoround-cpp/llama.cpp]  -> DIR/build/bin/llama-*
#        PORTABLE=1: AVX2/FMA/F16C only (runs on the lent GPU machine's CPU too) -> DIR/build-portable/bin
set -euo pipefail
dir=${1:-$HOME/.cache/autoround-cpp/llama.cpp}
version=0.3.36
mkdir -p "$dir"
cd "$dir"
if [ ! -d "llama_cpp_python-$version" ]; then
  # the sdist from PyPI's simple index (`pip download --no-binary :all:` would build its build
  # dependencies, CMake included, from source first)
  python3 - "$version" <<'PY'
import re, sys, urllib.request
name = "llama_cpp_python-%s.tar.gz" % sys.argv[1]
page = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/").read().decode()
url = re.search(r'href="([^"#]*%s)[^"]*"' % re.escape(name), page).group(1)
urllib.request.urlretrieve(url, name)
PY
  tar xzf "llama_cpp_python-$version.tar.gz"
fi
src=llama_cpp_python-$version/vendor/llama.cpp
build=build cpu=(-DGGML_NATIVE=ON)
if [ -n "${PORTABLE:-}" ]; then
  build=build-portable cpu=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF)
fi
cmake -S "$src" -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
      "${cpu[@]}" -DLLAMA_BUILD_TESTS=OFF >/dev/null
cmake --build $build -j"$(nproc)" --target llama-quantize llama-perplexity llama-imatrix
ls -1 "$dir"/$build/bin/llama-*
