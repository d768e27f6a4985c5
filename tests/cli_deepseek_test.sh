#!/usr/bin/env bash
# CTest's cli_deepseek: the DeepSeek-V3 fixture (transformers 5.17's DeepseekV3ForCausalLM, random and
# small: tests/fixtures/families/deepseek_v3: multi-head latent attention in every layer, a dense first
# layer, then the grouped sigmoid routing with a shared expert) tuned by `autoround quantize` on the
# CPU into auto_round: all five attention layers (q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj,
# o_proj), every routed expert and the shared expert in the block loss, written under transformers'
# names beside the two latent norms; the router and its e_score_correction_bias kept; the checkpoint
# reads back (our reader). The model is random (its perplexity, 172, is above the vocabulary's 128):
# the read-back figure shows a model near the float one (within 20%: round-to-nearest +10.8%, these
# 20 steps +12.0%), not quality; each block's loss against round-to-nearest's is the tuning's check.
# Then from the GGUF llama.cpp's converter wrote (model.gguf, arch deepseek2): gguf:q8_0 and
# gguf:q4_k_m, 30 tensors from tuned codes (per block attn_q_a, attn_q_b, attn_kv_a_mqa, attn_v_b,
# attn_output; the dense block's 3 ffn, each MoE block's 3 experts' and 3 shared expert's; attn_k_b
# is re-quantized from the tuned kv_b's values), read back; and gguf:mxfp4 (every block linear
# MXFP4). On a GPU machine also --device cuda (float32 GEMMs): the first block's round-to-nearest
# loss equals the CPU run's, and every block tunes.
# usage: cli_deepseek_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 model=$2/families/deepseek_v3 work=$3
rm -rf "$work" && mkdir -p "$work"
"$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/out" --format auto_round \
  --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 --group-size 32 \
  >"$work/quantize.log" 2>&1 || { echo "cli_deepseek: quantize failed"; cat "$work/quantize.log"; exit 1; }
! grep -q "cannot hold" "$work/quantize.log" || { echo "cli_deepseek: a false 'cannot hold' warning"; grep "cannot hold" "$work/quantize.log"; exit 1; }
for m in "$model" "$work/out/auto_round"; do
  "$autoround" eval --model "$m" --text "$model/text.tokens" --context 16 >>"$work/eval.log" 2>&1 ||
    { echo "cli_deepseek: eval of $m failed"; cat "$work/eval.log"; exit 1; }
done
# the GPU (where there is one): the same run with float32 GEMMs starts the first block from the CPU's
# round-to-nearest loss (the same block and inputs, the summation order apart) and tunes every block
gpu=0
if "$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/gpu" --format auto_round \
     --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 --group-size 32 --device cuda --gemm fp32 >"$work/gpu.log" 2>&1; then
  gpu=1
elif grep -q "no CUDA device found\|built without CUDA" "$work/gpu.log"; then
  echo "cli_deepseek: no GPU here: the GPU's latent attention is not run (test_cuda_block_run checks it on a GPU machine)"
else
  echo "cli_deepseek: --device cuda failed"; cat "$work/gpu.log"; exit 1
fi
python3 - "$work" "$gpu" <<'PY' || { cat "$work/quantize.log"; exit 1; }
import json, re, struct, sys
work = sys.argv[1]
report = json.load(open(f"{work}/out/quantization_report.json"))
blocks = report["runs"][0]["blocks"]
assert len(blocks) == 3 and "experts" not in blocks[0] and all(b["experts"] == 8 for b in blocks[1:]), blocks
assert all(b["best_loss"] < 0.8 * b["rtn_loss"] for b in blocks), blocks
before, after = [float(v) for v in re.findall(r"^perplexity ([0-9.]+) over", open(f"{work}/eval.log").read(), re.M)]
assert after != before and abs(after / before - 1) < 0.2, (before, after)
with open(f"{work}/out/auto_round/model.safetensors", "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
extra = json.load(open(f"{work}/out/auto_round/config.json"))["quantization_config"].get("extra_config", {})
for b in range(3):
    p = f"model.layers.{b}.self_attn."
    for layer in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"):
        assert p + layer + ".qweight" in header, (p + layer, sorted(k for k in header if k.startswith(p)))
    for norm in ("q_a_layernorm.weight", "kv_a_layernorm.weight"):
        assert header[p + norm]["shape"] == [32], (p + norm, header.get(p + norm))
    assert not any(k.startswith(p + "q_proj") or k.startswith(p + "k_proj") for k in header)
    m = f"model.layers.{b}.mlp."
    if b == 0:
        assert m + "gate_proj.qweight" in header
        continue
    assert header[m + "gate.e_score_correction_bias"]["dtype"] == "F32"
    assert extra.get(m + "gate") == {"bits": 16, "data_type": "float"}, extra
    for e in range(8):
        assert f"{m}experts.{e}.down_proj.qweight" in header, e
    for proj in ("gate_proj", "up_proj", "down_proj"):
        assert f"{m}shared_experts.{proj}.qweight" in header, proj
if int(sys.argv[2]):
    gpu = json.load(open(f"{work}/gpu/quantization_report.json"))["runs"][0]["blocks"]
    # the first block's inputs are the same on both; later blocks' follow each device's tuned blocks
    # (and this random model's routing: block 2's RTN loss 0.0388 on the CPU, 0.0567 on the H100)
    assert abs(gpu[0]["rtn_loss"] / blocks[0]["rtn_loss"] - 1) < 1e-4, (blocks[0], gpu[0])
    for g in gpu:
        assert g["best_loss"] < 0.8 * g["rtn_loss"], g
    print("cli_deepseek: on the GPU, RTN losses", [b["rtn_loss"] for b in gpu], "(CPU", [b["rtn_loss"] for b in blocks],
          "); tuned to", [round(b["best_loss"] / b["rtn_loss"], 3) for b in gpu], "of them")
print("cli_deepseek: 3 latent-attention blocks (5 attention layers each; 2 MoE blocks of 8 experts + a shared one) tuned and"
      " written; perplexity %.4f float, %.4f read back" % (before, after))
PY
bash "$(dirname "$0")/support/gguf_family_readback.sh" cli_deepseek "$autoround" "$model/model.gguf" "$model/text.tokens" "$work" 30
# gguf:mxfp4: its overrides' patterns cover the latent attention's tensors too (export/gguf_mix.hpp):
# every block linear tuned as MXFP4 (weight-only) and written so, attn_k_b re-quantized from kv_b's values
"$autoround" quantize --model "$model/model.gguf" --calibration "$model/text.tokens" --output "$work/mxfp4" --format gguf:mxfp4 \
  --nsamples 3 --seqlen 16 --iters 5 --batch-size 1 >"$work/mxfp4.log" 2>&1 ||
  { echo "cli_deepseek: quantize gguf:mxfp4 failed"; cat "$work/mxfp4.log"; exit 1; }
grep -q "^gguf:mxfp4: 30 of " "$work/mxfp4.log" || { echo "cli_deepseek: gguf:mxfp4 does not hold 30 tuned tensors"; cat "$work/mxfp4.log"; exit 1; }
"$autoround" eval --model "$work/mxfp4/gguf-mxfp4/model-mxfp4.gguf" --text "$model/text.tokens" --context 16 >"$work/mxfp4.eval" 2>&1 ||
  { echo "cli_deepseek: eval of gguf:mxfp4 failed"; cat "$work/mxfp4.eval"; exit 1; }
python3 - "$work/gguf-eval.log" "$work/mxfp4.eval" <<'PY'
import re, sys
source = float(re.findall(r"^perplexity ([0-9.]+) over", open(sys.argv[1]).read(), re.M)[0])
mxfp4 = float(re.findall(r"^perplexity ([0-9.]+) over", open(sys.argv[2]).read(), re.M)[0])
assert mxfp4 != source and abs(mxfp4 / source - 1) < 0.2, (source, mxfp4)
print("cli_deepseek: gguf:mxfp4 %.4f (GGUF source %.4f; our reader)" % (mxfp4, source))
PY
rm -rf "$work"
