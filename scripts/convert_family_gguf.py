#!/usr/bin/env python3
"""A family fixture (tests/fixtures/families/<family>: config.json + model.safetensors, no tokenizer)
converted to GGUF by llama.cpp's own convert_hf_to_gguf.py (the copy vendored in llama-cpp-python
0.3.36: the judge's names, shapes, permutations and metadata), float32 tensors. The fixtures ship
no tokenizer, which the converter requires: a stand-in byte-level BPE vocabulary of vocab_size
tokens "t", "0", "t0", "t3", "t4", ... with the one merge "t 0" is written instead (the logits do not depend on it; the
fixture's text.tokens are token ids), and where Gemma's converter reads tokenizer.json for the
vocabulary's size, a stand-in tokenizer.json in a temporary copy of the fixture.
usage: python convert_family_gguf.py LLAMA_CPP_DIR FAMILY_DIR OUT.gguf   (needs torch, numpy, safetensors)"""
import runpy
import sys

llama, family, out = sys.argv[1:4]
sys.path.insert(0, llama)
sys.path.insert(1, llama + "/gguf-py")
import gguf  # noqa: E402
from conversion import get_model_architecture, get_model_class  # noqa: E402
from conversion.base import ModelBase, ModelType  # noqa: E402
from pathlib import Path  # noqa: E402


def stand_in_vocab(self):
    # one merge ("t" + "0" = "t0"; tokens 0-2), as a byte-level BPE vocabulary needs at least one:
    # gguf-py drops an empty merge list, and without merges llama.cpp does not load the file and
    # `autoround` cannot write its tokenizer.json (the fixtures' model.gguf files converted before
    # 2026-12-07 have "t0" ... and no merges: their tests read weights only)
    n = self.hparams["vocab_size"]
    self.gguf_writer.add_tokenizer_model("gpt2")
    self.gguf_writer.add_tokenizer_pre("default")
    self.gguf_writer.add_token_list(["t", "0", "t0"] + [f"t{i}" for i in range(3, n)])
    self.gguf_writer.add_token_types([gguf.TokenType.NORMAL] * n)
    self.gguf_writer.add_token_merges(["t 0"])


# Gemma's converter counts the real vocabulary in tokenizer.json (to drop padding rows of the
# embedding): a copy of the fixture with a stand-in tokenizer.json of vocab_size tokens
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
if not os.path.exists(os.path.join(family, "tokenizer.json")):
    with open(os.path.join(family, "config.json")) as f:
        n = json.load(f)["vocab_size"]
    copy = tempfile.mkdtemp(prefix="family-")
    for name in ("config.json", "model.safetensors"):
        os.symlink(os.path.abspath(os.path.join(family, name)), os.path.join(copy, name))
    with open(os.path.join(copy, "tokenizer.json"), "w") as f:
        json.dump({"model": {"vocab": {f"t{i}": i for i in range(n)}}, "added_tokens": []}, f)
    family = copy
hparams = ModelBase.load_hparams(Path(family), False)
get_model_class(get_model_architecture(hparams, ModelType.TEXT)).set_vocab = stand_in_vocab
sys.argv = ["convert_hf_to_gguf.py", family, "--outfile", out, "--outtype", "f32"]
runpy.run_path(llama + "/convert_hf_to_gguf.py", run_name="__main__")
