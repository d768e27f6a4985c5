#!/usr/bin/env python3
"""Write tests/fixtures/botchan_spm_ids.txt: the token ids Google's Python sentencepiece
(PyPI sentencepiece 0.2.1, the reference toolchain's tokenizer library) gives for the first 300
lines of botchan.txt (its bytes up to the 300th LF, BOS first) with test_model.model, both from the
sentencepiece 0.2.1 source distribution that scripts/fetch-assets.sh unpacks into the asset cache.
usage: make_spm_fixture.py ASSET_DIR OUT
"""
import sys

import sentencepiece as spm


def main():
    assets, out = sys.argv[1], sys.argv[2]
    sp = spm.SentencePieceProcessor(model_file=f"{assets}/spm-test_model.model")
    with open(f"{assets}/botchan.txt", "rb") as f:  # the exact bytes (the file has CRLF line ends)
        text = b"\n".join(f.read().split(b"\n")[:300]).decode("utf-8")
    ids = sp.encode(text, add_bos=True)
    with open(out, "w") as f:
        f.write(" ".join(str(i) for i in ids) + "\n")
    print(f"{out}: {len(ids)} ids (sentencepiece {spm.__version__})")


if __name__ == "__main__":
    main()
