#!/usr/bin/env python3
"""Load a vision-language checkpoint we wrote (and its source) with transformers itself
(AutoModelForImageTextToText.from_pretrained; our auto_round checkpoints through the installed
auto-round 0.16.1's loader) and check, on the CPU in float32:
  - text only: its perplexity over TOKENS in windows of CONTEXT equals OUR_PERPLEXITY (what
    `autoround eval --context CONTEXT` printed for the same directory) within --tolerance;
  - image + text (Gemma 3, LLaVA: the image token repeated as the config says; other families
    need their processor's image sizes and grids, not tried): a forward with one random 28 x 28
    image gives finite logits, for the source and for our checkpoint, and how far apart they are.
Test-time tool (torch, transformers 5.x, auto-round). Prints one line per check; exit 1 on a failure.
usage: check_vlm_transformers.py SOURCE_DIR OURS_DIR TOKENS CONTEXT OUR_PERPLEXITY [--tolerance 0.01]
"""
import math
import sys

import torch
from transformers import AutoModelForImageTextToText


def load(directory):
    return AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.float32, device_map="cpu").eval()


def perplexity(model, ids, context):
    nll, count = 0.0, 0
    for w in range(len(ids) // context):
        window = torch.tensor([ids[w * context:(w + 1) * context]])
        with torch.no_grad():
            logits = model(input_ids=window).logits[0].double()
        nll -= float(torch.log_softmax(logits[:-1], -1).gather(1, window[0, 1:, None]).sum())
        count += context - 1
    return math.exp(nll / count)


def image_forward(model, ids):
    c = model.config
    image_token = getattr(c, "image_token_id", None) or getattr(c, "image_token_index")
    count = getattr(c, "mm_tokens_per_image", None) or getattr(c, "image_seq_length", None)
    prompt = torch.tensor([[ids[0]] + [image_token] * count + ids[1:12]])
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        return model(input_ids=prompt, pixel_values=pixels).logits[0]


def main(argv):
    tolerance = 0.01
    if "--tolerance" in argv:
        i = argv.index("--tolerance")
        tolerance = float(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) != 5:
        sys.exit(__doc__)
    source, ours, tokens, context, expected = argv[0], argv[1], argv[2], int(argv[3]), float(argv[4])
    ids = [int(t) for t in open(tokens).read().split()]
    src, out = load(source), load(ours)
    theirs = perplexity(out, ids, context)
    ok = abs(expected / theirs - 1) <= tolerance
    print(f"{ours}: transformers ({type(out).__name__}) text perplexity {theirs:.4f}; ours {expected:.4f}; "
          f"ratio {expected / theirs:.5f} {'ok' if ok else 'DIFFERS'}")
    finite = True
    if getattr(src.config, "mm_tokens_per_image", None) or getattr(src.config, "image_seq_length", None):
        a, b = image_forward(src, ids), image_forward(out, ids)
        finite = bool(torch.isfinite(a).all() and torch.isfinite(b).all())
        print(f"image + text: source and ours give {'finite' if finite else 'NON-FINITE'} logits {tuple(b.shape)}; "
              f"max |difference| {float((a - b).abs().max()):.4g} (max |logit| {float(a.abs().max()):.4g})")
    else:
        print("image + text: not tried (this family's image inputs need its processor's sizes and grids)")
    sys.exit(0 if ok and finite else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
