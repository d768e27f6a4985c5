#!/usr/bin/env bash
# CTest's cli_text: `autoround quantize --calibration book.txt` tokenizes the text with the
# model's own byte-level BPE (from its GGUF) and gives exactly the run of the token-id file
# Hugging Face tokenizers wrote (scripts/tokenize_gguf.py): byte-identical output; `eval --text`
# likewise, on the GGUF and on the written checkpoint (its tokenizer.json); text for a model
# without a tokenizer is refused, naming the file.
# usage: cli_text_test.sh AUTOROUND ASSETS_DIR WORK_DIR
set -euo pipefail
autoround=$1 assets=$2 work=$3
if [ ! -f "$assets/smollm2-135m-6l.gguf" ]; then
  echo "cli_text: assets missing (scripts/fetch-assets.sh)"
  if [ -n "${CI:-}" ]; then exit 1; else exit 77; fi
fi
[ -n "$work" ] || exit 2
rm -rf "$work" && mkdir -p "$work"
model=$assets/smollm2-135m-6l.gguf  # the asset cut to 6 blocks: same tokenizer, a fifth of the work
for kind in tokens txt; do
  "$autoround" quantize --model "$model" --calibration "$assets/kjv-calib.$kind" --iters 2 --nsamples 2 --seqlen 64 \
    --batch-size 2 --output "$work/$kind" 2>/dev/null >"$work/$kind.log"
done
cmp "$work/tokens/auto_round/model.safetensors" "$work/txt/auto_round/model.safetensors"
a=$("$autoround" eval --model "$model" --text "$assets/kjv-eval.tokens" --windows 2 | cut -d: -f1)
b=$("$autoround" eval --model "$model" --text "$assets/kjv-eval.txt" --windows 2 | cut -d: -f1)
[ "$a" = "$b" ] || { echo "eval: '$a' (token ids) vs '$b' (text)"; exit 1; }
# the checkpoint just written (its tokenizer.json exported from the GGUF) reads the same text alike
c=$("$autoround" eval --model "$work/txt/auto_round" --text "$assets/kjv-eval.tokens" --windows 2 | cut -d: -f1)
d=$("$autoround" eval --model "$work/txt/auto_round" --text "$assets/kjv-eval.txt" --windows 2 | cut -d: -f1)
[ "$c" = "$d" ] || { echo "eval of the checkpoint: '$c' (token ids) vs '$d' (text)"; exit 1; }
# a directory without a tokenizer: text is refused, naming the file
mkdir -p "$work/bare"
for f in "$work/txt/auto_round"/*; do [ "$(basename "$f")" = tokenizer.json ] || ln -s "$f" "$work/bare/"; done
if "$autoround" eval --model "$work/bare" --text "$assets/kjv-eval.txt" --windows 1 2>"$work/err.log" >/dev/null; then
  echo "eval of text with a model without a tokenizer should fail"; exit 1
fi
grep -q "kjv-eval.txt: text needs the model's tokenizer" "$work/err.log" || { cat "$work/err.log"; exit 1; }
echo "cli_text: text and token ids give byte-identical checkpoints and the same perplexity ($a; checkpoint $c)"
rm -rf "$work"
