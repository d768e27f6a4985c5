#!/usr/bin/env bash
# CTest's cli_gpt_oss: the GPT-OSS fixture (transformers 5.17's GptOssForCausalLM, random and small:
# tests/fixtures/families/gpt_oss) tuned by `autoround quantize` on the CPU into auto_round: the
# attention and every expert's gate / up / down in the block loss, the experts written per expert as
# the reference's unfused modules (mlp.experts.E.{gate,up,down}_proj with their biases), the router
# (weight and bias), the sinks and the o_proj bias kept in float; the checkpoint reads back (our
# reader) to a perplexity within 10% of the float model's (W4G32 on random weights: 5.7% measured). The same model with MXFP4 experts (gpt_oss_mxfp4, as released
# checkpoints store them) quantizes too, and its config.json no longer claims MXFP4. From the GGUF of
# it that llama.cpp's converter writes: gguf:q8_0 / gguf:q4_k_m from tuned codes, read back.
# usage: cli_gpt_oss_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 fixtures=$2/families work=$3
model=$fixtures/gpt_oss
rm -rf "$work" && mkdir -p "$work"
"$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/out" --format auto_round \
  --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 --group-size 32 \
  >"$work/quantize.log" 2>&1 || { echo "cli_gpt_oss: quantize failed"; cat "$work/quantize.log"; exit 1; }
for m in "$model" "$work/out/auto_round"; do
  "$autoround" eval --model "$m" --text "$model/text.tokens" --context 16 >>"$work/eval.log" 2>&1 ||
    { echo "cli_gpt_oss: eval of $m failed"; cat "$work/eval.log"; exit 1; }
done
"$autoround" quantize --model "$fixtures/gpt_oss_mxfp4" --calibration "$model/text.tokens" --output "$work/mxfp4" --format auto_round \
  --nsamples 3 --seqlen 16 --iters 2 --batch-size 1 --group-size 32 >"$work/mxfp4.log" 2>&1 ||
  { echo "cli_gpt_oss: quantize of the MXFP4 checkpoint failed"; cat "$work/mxfp4.log"; exit 1; }
python3 - "$work" <<'PY' || { cat "$work/quantize.log"; exit 1; }
import json, re, struct, sys
work = sys.argv[1]
report = json.load(open(f"{work}/out/quantization_report.json"))
blocks = report["runs"][0]["blocks"]
assert len(blocks) == 2 and all(b["experts"] == 8 for b in blocks), blocks
assert all(b["best_loss"] < 0.5 * b["rtn_loss"] for b in blocks), blocks  # tuned (measured: 0.26, 0.17)
before, after = [float(v) for v in re.findall(r"^perplexity ([0-9.]+) over", open(f"{work}/eval.log").read(), re.M)]
assert after != before and abs(after / before - 1) < 0.1, (before, after)  # quantized (W4G32 of random weights), and still the model
with open(f"{work}/out/auto_round/model.safetensors", "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
for b in range(2):
    p = f"model.layers.{b}."
    for name in ("self_attn.sinks", "self_attn.o_proj.bias", "self_attn.q_proj.bias", "mlp.router.weight", "mlp.router.bias"):
        assert p + name in header, (p + name, sorted(k for k in header if k.startswith(p)))
    assert header[p + "self_attn.sinks"]["shape"] == [4]
    assert not any(k.startswith(p + "mlp.experts.gate_up_proj") or k.startswith(p + "mlp.experts.down_proj") for k in header)
    for e in range(8):
        for proj, rows in (("gate_proj", 32), ("up_proj", 32), ("down_proj", 64)):
            q = f"{p}mlp.experts.{e}.{proj}"
            assert header[q + ".bias"]["shape"] == [rows], q
            assert q + ".qweight" in header, q  # packed: tuned
config = json.load(open(f"{work}/mxfp4/auto_round/config.json"))
assert config["quantization_config"]["quant_method"] == "auto-round", config["quantization_config"]
print("cli_gpt_oss: 2 blocks x 8 experts tuned and written per expert with biases; perplexity %.4f float, %.4f read back from the checkpoint"
      % (before, after))
PY
# from the GGUF llama.cpp's converter writes of the MXFP4 checkpoint (gpt_oss_mxfp4/model.gguf: arch
# gpt-oss, MXFP4 experts, 2-D expert biases): gguf:q8_0 and gguf:q4_k_m, every linear tensor from
# tuned codes (4 attention + 3 experts' per block; biases, sinks, norms and routers kept float),
# read back near the source
mx=$fixtures/gpt_oss_mxfp4
bash "$(dirname "$0")/support/gguf_family_readback.sh" cli_gpt_oss "$autoround" "$mx/model.gguf" "$model/text.tokens" "$work" 14
rm -rf "$work"
