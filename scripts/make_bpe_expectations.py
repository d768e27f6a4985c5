#!/usr/bin/env python3
"""Expected ids for the byte-level BPE test (tests/test_bpe_tokenizer.cpp), made by Hugging Face
`tokenizers` (test-time reference tool; the C++ library never runs Python).

For llama.cpp's ggml-vocab-llama-bpe.gguf (Llama 3) and ggml-vocab-qwen2.gguf: rebuild the
model's tokenizer as its tokenizer.json defines it (BPE over the GGUF's vocabulary and merges,
pre-tokenizer Split(Regex, isolated) then ByteLevel(use_regex=False), Llama 3's ignore_merges,
the GGUF's control tokens as special added tokens), save it as VOCAB_DIR/NAME.tokenizer.json,
and write the ids of each text as VOCAB_DIR/NAME.TEXT.tokens, one per line. Texts: the two
books of the assets, and mixed.txt = every ggml-vocab-*.inp file of VOCAB_DIR concatenated (real
test strings with digits, code, emoji, CJK, Cyrillic, Khmer, whitespace runs).

usage: make_bpe_expectations.py VOCAB_DIR BOOK.txt...
"""
import os
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

PATTERNS = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def build(path, name):
    reader = gguf.GGUFReader(path)
    tokens = strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings(reader, "tokenizer.ggml.merges")]
    field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=name == "llama-bpe"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[name]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for i, t in enumerate(tokens) if types[i] == 3])
    for i, t in enumerate(tokens):  # the special tokens must keep their GGUF ids
        if types[i] == 3:
            assert tok.token_to_id(t) == i, (t, i, tok.token_to_id(t))
    return tok


def write_atomically(path, text):
    with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    vocab_dir, books = sys.argv[1], sys.argv[2:]
    inputs = sorted(f for f in os.listdir(vocab_dir) if f.endswith(".gguf.inp"))
    mixed = "".join(open(os.path.join(vocab_dir, f), encoding="utf-8", newline="").read() for f in inputs)
    write_atomically(os.path.join(vocab_dir, "mixed.txt"), mixed)
    texts = {"mixed": mixed}
    for book in books:
        texts[os.path.basename(book)[:-4]] = open(book, encoding="utf-8", newline="").read()  # bytes as they are (no newline translation)
    for name in PATTERNS:
        tok = build(os.path.join(vocab_dir, f"ggml-vocab-{name}.gguf"), name)
        tok.save(os.path.join(vocab_dir, f"{name}.tokenizer.json"))
        for label, text in texts.items():
            ids = tok.encode(text, add_special_tokens=False).ids
            assert tok.decode(ids) == text, (name, label)
            write_atomically(os.path.join(vocab_dir, f"{name}.{label}.tokens"), "\n".join(map(str, ids)) + "\n")
            print(f"{name}: {label}: {len(text)} characters -> {len(ids)} tokens")


if __name__ == "__main__":
    main()
