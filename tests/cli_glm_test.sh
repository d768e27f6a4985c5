#!/usr/bin/env bash
# CTest's cli_glm: the GLM-4.5-MoE fixture (transformers 5.17's Glm4MoeForCausalLM, random and small:
# tests/fixtures/families/glm4_moe: a dense first layer, then two MoE layers with DeepSeek-V3's
# sigmoid grouped routing and a shared expert) tuned by `autoround quantize` on the CPU into
# auto_round: the attention, every routed expert and the shared expert in the block loss, written
# as the reference's unfused modules (mlp.experts.E.*, mlp.shared_experts.*); the router and its
# e_score_correction_bias (float32) kept, the q/k/v biases and q/k norms beside; the checkpoint
# reads back (our reader) to the perplexity the run measured, within 10% of the float model's.
# usage: cli_glm_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 model=$2/families/glm4_moe work=$3
rm -rf "$work" && mkdir -p "$work"
"$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/out" --format auto_round \
  --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 --group-size 32 \
  >"$work/quantize.log" 2>&1 || { echo "cli_glm: quantize failed"; cat "$work/quantize.log"; exit 1; }
# every layer fits auto_round's packing: the routers are float by design, not layers it could not hold
! grep -q "cannot hold" "$work/quantize.log" || { echo "cli_glm: a false 'cannot hold' warning"; grep "cannot hold" "$work/quantize.log"; exit 1; }
for m in "$model" "$work/out/auto_round"; do
  "$autoround" eval --model "$m" --text "$model/text.tokens" --context 16 >>"$work/eval.log" 2>&1 ||
    { echo "cli_glm: eval of $m failed"; cat "$work/eval.log"; exit 1; }
done
python3 - "$work" <<'PY' || { cat "$work/quantize.log"; exit 1; }
import json, re, struct, sys
work = sys.argv[1]
report = json.load(open(f"{work}/out/quantization_report.json"))
blocks = report["runs"][0]["blocks"]
assert len(blocks) == 3 and "experts" not in blocks[0] and all(b["experts"] == 8 for b in blocks[1:]), blocks
assert all(b["best_loss"] < 0.75 * b["rtn_loss"] for b in blocks), blocks  # tuned (measured: 0.56, 0.49, 0.26)
before, after = [float(v) for v in re.findall(r"^perplexity ([0-9.]+) over", open(f"{work}/eval.log").read(), re.M)]
assert after != before and abs(after / before - 1) < 0.1, (before, after)
with open(f"{work}/out/auto_round/model.safetensors", "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
extra = json.load(open(f"{work}/out/auto_round/config.json"))["quantization_config"].get("extra_config", {})
for b in range(3):
    p = f"model.layers.{b}."
    for name in ("self_attn.q_proj.bias", "self_attn.v_proj.bias", "self_attn.q_norm.weight", "self_attn.k_norm.weight"):
        assert p + name in header, (p + name, sorted(k for k in header if k.startswith(p)))
    assert p + "self_attn.o_proj.bias" not in header
    if b == 0:
        assert p + "mlp.gate_proj.qweight" in header
        continue
    assert header[p + "mlp.gate.e_score_correction_bias"]["dtype"] == "F32"
    assert header[p + "mlp.gate.weight"]["shape"] == [8, 64] and extra.get(p + "mlp.gate") == {"bits": 16, "data_type": "float"}, extra
    for e in range(8):
        assert f"{p}mlp.experts.{e}.down_proj.qweight" in header, e
    for proj in ("gate_proj", "up_proj", "down_proj"):
        assert f"{p}mlp.shared_experts.{proj}.qweight" in header, proj
print("cli_glm: 1 dense + 2 MoE blocks (8 experts + a shared one) tuned and written unfused; perplexity %.4f float, %.4f read back" % (before, after))
PY
# from the GGUF llama.cpp's converter wrote (model.gguf): gguf:q8_0 and gguf:q4_k_m, every linear tensor from
# tuned codes (the dense block's 7, each MoE block's 4 attention + 3 experts' + 3 shared expert's), read back
bash "$(dirname "$0")/support/gguf_family_readback.sh" cli_glm "$autoround" "$model/model.gguf" "$model/text.tokens" "$work" 27
rm -rf "$work"
