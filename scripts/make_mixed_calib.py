#!/usr/bin/env python3
"""Write a calibration text of three domains, interleaved, for the GGUF out-of-domain study.

Test-time asset tool (docs/assets.md, "A calibration text of three domains"). In-domain
calibration flatters tuning: the Bible alone makes tuned files excellent on the Bible and
no better than llama.cpp + imatrix on a novel. The reference's default calibration
(pile-10k) mixes domains; this is the closest real mix Debian's packages give:

  scripture   kjv-calib.txt (Genesis, bible-kjv)
  technical   the Python 3.11 tutorial, HOWTOs and FAQ (python3.11-doc, reStructuredText sources)
  quotations  fortune files of people's words (fortunes: literature, wisdom, people, science,
              work, politics, humorists, education, law), '%' separators dropped

Round-robin blocks of about BLOCK characters, cut at line ends, until the shortest stream
(Genesis) runs out, so every prefix of the text -- the first N windows of 512 tokens that
both `autoround --nsamples N` and `llama-imatrix --chunks N` take -- holds the three
domains in about equal parts. Deterministic: the same packages give the same bytes (the
asset script checks a recorded sha256).

usage: make_mixed_calib.py KJV_CALIB.txt PYTHON_DOC_SOURCES FORTUNES_DIR OUT.txt
"""
import pathlib
import sys

BLOCK = 2000
FORTUNE_FILES = ["literature", "wisdom", "people", "science", "work", "politics",
                 "humorists", "education", "law"]
PYTHON_DIRS = ["tutorial", "howto", "faq"]


def lines_of(paths, drop=lambda line: False):
    out = []
    for path in paths:
        for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip() and not drop(line):
                out.append(line.rstrip())
    return out


def blocks(lines):
    block, size = [], 0
    for line in lines:
        block.append(line)
        size += len(line) + 1
        if size >= BLOCK:
            yield "\n".join(block) + "\n"
            block, size = [], 0


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    kjv, pydoc, fortunes, out = sys.argv[1:]
    streams = [
        blocks(lines_of([kjv])),
        blocks(lines_of(sorted(p for d in PYTHON_DIRS for p in pathlib.Path(pydoc, d).glob("*.rst.txt")))),
        blocks(lines_of([pathlib.Path(fortunes, f) for f in FORTUNE_FILES], drop=lambda l: l.strip() == "%")),
    ]
    parts = []
    while True:  # whole rounds only, until the shortest stream runs out
        round_ = [next(s, None) for s in streams]
        if None in round_:
            break
        parts.extend(round_)
    pathlib.Path(out).write_text("".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
