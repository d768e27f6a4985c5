#!/usr/bin/env python3
"""CTest tokenizer_json_readback: transformers loads each tokenizer.json (+ tokenizer_config.json)
our exporter wrote from a GGUF vocabulary (DIR/NAME/, written by test_bpe_tokenizer with
AUTOROUND_TOKENIZER_JSON_OUT=DIR) and must give
  - the ids of llama.cpp's test file for that vocabulary (ASSETS/vocab/ggml-vocab-NAME.gguf.inp /
    .out, written by the model's own Hugging Face tokenizer), and
  - our ids (DIR/NAME/ours.mixed.tokens) on ASSETS/vocab/mixed.txt, BOS as the exporter says.
usage: check_tokenizer_json.py DIR ASSETS"""
import os
import sys

from transformers import AutoTokenizer

root, assets = sys.argv[1], sys.argv[2]
failed = 0
mixed = open(os.path.join(assets, "vocab", "mixed.txt"), encoding="utf-8").read()
for name in sorted(os.listdir(root)):
    tok = AutoTokenizer.from_pretrained(os.path.join(root, name))
    base = os.path.join(assets, "vocab", f"ggml-vocab-{name}.gguf")
    texts = open(base + ".inp", encoding="utf-8", newline="").read().split("\n__ggml_vocab_test__\n")
    expected = [[int(x) for x in line.split()] for line in open(base + ".out", encoding="utf-8").read().split("\n")]
    equal = sum(tok.encode(t, add_special_tokens=False) == e for t, e in zip(texts, expected))
    ours = [int(x) for x in open(os.path.join(root, name, "ours.mixed.tokens"))]
    theirs = tok(mixed)["input_ids"]
    ok = equal == len(texts) and theirs == ours
    failed += not ok
    print(f"{name:15s} {type(tok).__name__}: {equal}/{len(texts)} test texts; mixed.txt {len(theirs)} ids, "
          f"{'equal to ours' if theirs == ours else 'DIFFERENT from ours (' + str(len(ours)) + ')'}")
print("tokenizer_json_readback:", "FAILED" if failed else "all equal")
sys.exit(1 if failed else 0)
