#!/usr/bin/env python3
"""Tokenize a UTF-8 text with the tokenizer stored inside a GGUF model file.

Test-time reference tool (the C++ library never runs Python). SmolLM2's tokenizer is
GPT-2-style byte-level BPE ("tokenizer.ggml.model" = gpt2, pre-tokenizer "smollm": single
digits, then GPT-2's byte-level regex). We rebuild it with the Hugging Face `tokenizers`
library from the vocabulary and merges in the GGUF file (read with the `gguf` package),
check that decoding gives the text back, and write one token id per line.

usage: tokenize_gguf.py MODEL.gguf TEXT.txt OUT.tokens
"""
import sys

import gguf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def field_strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def build_tokenizer(path):
    reader = gguf.GGUFReader(path)
    model = bytes(reader.fields["tokenizer.ggml.model"].parts[-1]).decode()
    pre = bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    if model != "gpt2" or pre != "smollm":
        sys.exit(f"{path}: tokenizer {model}/{pre} is not the byte-level BPE this script rebuilds")
    tokens = field_strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in field_strings(reader, "tokenizer.ggml.merges")]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    return tok


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model_path, text_path, out_path = sys.argv[1:]
    tok = build_tokenizer(model_path)
    text = open(text_path, encoding="utf-8").read()
    ids = tok.encode(text).ids
    if tok.decode(ids) != text:
        sys.exit(f"{text_path}: tokenize/detokenize round trip failed")
    with open(out_path + ".tmp", "w") as f:
        f.write("\n".join(str(i) for i in ids) + "\n")
    import os
    os.replace(out_path + ".tmp", out_path)
    print(f"{text_path}: {len(text)} chars -> {len(ids)} tokens ({out_path})")


if __name__ == "__main__":
    main()
