#!/usr/bin/env bash
# llama.cpp as the judge of our GGUF files of the families beyond LLaMA (issue #25 item 2b): three
# MoE models made from the asset (scripts/make_moe_from_dense_gguf.py: llama with 4 experts =
# Mixtral's layout, qwen3moe, and qwen2moe with its gated shared expert) and, with ARCHS=gemma3 /
# gemma2 / gemma4 / gemma4moe (the 26B-A4B's experts beside the MLP) / gemma4e2b (E2B's per-layer embeddings and
# shared KV layers), Gemma models (scripts/make_gemma_from_dense_gguf.py), with ARCHS=phi3 a Phi-3 model
# (scripts/make_phi3_from_dense_gguf.py: fused attn_qkv / ffn_up, LongRoPE), each tuned by `autoround quantize` into gguf:q8_0 and gguf:q4_k_m on
# the CPU; then every file (the F16 source too) scored by llama.cpp's llama-perplexity and by
# `autoround eval --llama-perplexity` (the same windows: BOS rule, second half of each 512-token
# window) on kjv-eval.txt. Prints one line per file: ours, llama.cpp's, their ratio.
# usage: scripts/moe-llama-check.sh AUTOROUND LLAMA_BIN_DIR ASSETS WORK [CHUNKS=8] [THREADS=2]
#        env: ITERS (10), NSAMPLES (8): the tuning's settings (256-token samples); ARCHS (llama qwen3moe qwen2moe; also gemma3 gemma2 gemma4 gemma4moe gemma4e2b glm4moe gpt-oss phi3 deepseek2)
#        (deepseek2: llama-perplexity runs with --no-repack: on a host with AMX its CPU weight repacking
#        takes the F16 / Q8_0 attn_k_b, a 3-D tensor it has no kernel for, and aborts in ggml-backend.cpp)
#        (LLAMA_BIN_DIR: scripts/build-llama-cpp.sh's build/bin; ASSETS: scripts/fetch-assets.sh's,
#        with pyenv/ holding gguf-py)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
autoround=$1 bin=$2 assets=$3 work=$4 chunks=${5:-8} threads=${6:-2}
mkdir -p "$work"
text=$assets/kjv-eval.txt
for arch in ${ARCHS:-llama qwen3moe qwen2moe}; do
  model=$work/moe-$arch.gguf
  case $arch in
    gemma3 | gemma2 | gemma4 | gemma4moe | gemma4e2b) maker=make_gemma_from_dense_gguf.py ;;
    phi3) maker=make_phi3_from_dense_gguf.py ;;  # (takes no ARCH argument: the extra one is ignored)
    *) maker=make_moe_from_dense_gguf.py ;;
  esac
  [ -f "$model" ] || "$assets/pyenv/bin/python" "$here/$maker" "$assets/smollm2-135m-instruct-q4_1.gguf" "$model" "$arch" >/dev/null
  if [ ! -d "$work/moe-$arch-q" ]; then
    "$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.tokens" --nsamples "${NSAMPLES:-8}" --seqlen 256 --iters "${ITERS:-10}" \
      --batch-size 4 --format gguf:q8_0,gguf:q4_k_m --output "$work/moe-$arch-q" --threads "$threads" >"$work/moe-$arch-q.log" 2>&1 ||
      { tail -20 "$work/moe-$arch-q.log"; exit 1; }
  fi
  for file in "$model" "$work/moe-$arch-q/gguf-q8_0/model-q8_0.gguf" "$work/moe-$arch-q/gguf-q4_k_m/model-q4_k_m.gguf"; do
    ours=$("$autoround" eval --model "$file" --text "$text" --llama-perplexity --windows "$chunks" --threads "$threads" | awk '/^perplexity/ { print $2 }')
    repack=()
    [ "$arch" = deepseek2 ] && repack=(--no-repack)
    theirs=$("$bin/llama-perplexity" -m "$file" -f "$text" -c 512 --chunks "$chunks" -t "$threads" "${repack[@]}" 2>&1 |
      sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    awk -v f="$(basename "$(dirname "$file")")/$(basename "$file")" -v a="$ours" -v b="$theirs" \
      'BEGIN { printf "%-40s ours %10.4f  llama.cpp %10.4f  ratio %.4f\n", f, a, b, a / b }'
  done
done
