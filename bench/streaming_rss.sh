#!/usr/bin/env bash
# Peak RSS of streaming quantization against the model's float32 size, for two layer counts of
# one Llama-3.2-3B-like shape (hidden 3072, intermediate 8192, 24 heads, 8 KV heads, vocab
# 128256, tied embeddings; random bf16 weights): docs/speed.md, "Streaming".
# usage: bench/streaming_rss.sh BUILD_DIR WORK_DIR [LAYERS="8 28"]   (WORK_DIR needs ~9 GB free)
set -euo pipefail
build=$1 work=$2
layers=${3:-8 28}
bench=$build/bench/bench_streaming_rss
echo "| layers | parameters | float32 size | bf16 checkpoint | auto_round W4G128 output | wall | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for n in $layers; do
  "$bench" make "$work/synthetic-$n" "$n" >/dev/null
  "$bench" run "$work/synthetic-$n" "$work/out-$n" 1 2 32
  rm -rf "$work/synthetic-$n" "$work/out-$n"
done
