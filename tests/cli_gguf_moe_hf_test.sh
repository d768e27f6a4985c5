#!/usr/bin/env bash
# CTest's cli_gguf_moe_hf: a mixture-of-experts model read from GGUF written as a Hugging Face
# checkpoint. Each family fixture (transformers 5.17's random small Qwen3-MoE, Qwen2-MoE with its
# gated shared expert, Mixtral) is tuned by `autoround quantize` into auto_round twice: from its
# Hugging Face directory and from model.gguf, the file llama.cpp's converter wrote of it.
# - qwen3_moe, qwen2_moe (the GGUF holds the same float32 rows in the same order): every tensor of the
#   two checkpoints is byte for byte the same, and the GGUF one's config.json reads back to the
#   same perplexity;
# - mixtral (llama.cpp's converter permutes q/k rows for adjacent-pair RoPE: the same model, sums in
#   another order, so the tuning drifts): the same tensor names (experts as the reference saves
#   them, block_sparse_moe.experts.E.*_proj), perplexities read back within 5% of each other.
# (transformers + auto-round 0.16.1's loader load these GGUF-sourced checkpoints to our perplexity:
# scripts/check_transformers_load.py, docs/formats.md; CI has no torch.)
# usage: cli_gguf_moe_hf_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 fixtures=$2/families work=$3
rm -rf "$work" && mkdir -p "$work"
for family in qwen3_moe qwen2_moe mixtral; do
  model=$fixtures/$family
  for source in "$model" "$model/model.gguf"; do
    out=$work/$family-$([ -d "$source" ] && echo hf || echo gguf)
    "$autoround" quantize --model "$source" --calibration "$model/text.tokens" --output "$out" --format auto_round \
      --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 --group-size 32 >"$out.log" 2>&1 ||
      { echo "cli_gguf_moe_hf: quantize of $source failed"; cat "$out.log"; exit 1; }
    "$autoround" eval --model "$out/auto_round" --text "$model/text.tokens" --context 16 >"$out.eval" 2>&1 ||
      { echo "cli_gguf_moe_hf: eval of $out/auto_round failed"; cat "$out.eval"; exit 1; }
  done
  python3 - "$work" "$family" <<'PY'
import json, re, struct, sys
work, family = sys.argv[1:]

def tensors(path):
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}

def perplexity(path):
    return float(re.search(r"^perplexity ([0-9.]+) over", open(path).read(), re.M).group(1))

hf, gguf = (tensors(f"{work}/{family}-{s}/auto_round/model.safetensors") for s in ("hf", "gguf"))
assert set(hf) == set(gguf), sorted(set(hf) ^ set(gguf))[:8]
config = json.load(open(f"{work}/{family}-gguf/auto_round/config.json"))
assert config["model_type"] == family, config["model_type"]
p_hf, p_gguf = perplexity(f"{work}/{family}-hf.eval"), perplexity(f"{work}/{family}-gguf.eval")
if family == "mixtral":
    assert "model.layers.1.block_sparse_moe.experts.7.down_proj.qweight" in gguf
    assert abs(p_gguf / p_hf - 1) < 0.05, (p_hf, p_gguf)
else:
    differing = [k for k in hf if hf[k] != gguf[k]]
    assert not differing, differing[:8]
    assert p_hf == p_gguf, (p_hf, p_gguf)
print(f"cli_gguf_moe_hf: {family}: {len(gguf)} tensors; from the directory {p_hf}, from GGUF {p_gguf}"
      + ("" if family == "mixtral" else " (every tensor the same bytes)"))
PY
done
rm -rf "$work"
