#!/usr/bin/env bash
# CTest's cli_phi3: the Phi-3 fixture (transformers 5.17's Phi3ForCausalLM: fused qkv_proj and
# gate_up_proj, LongRoPE, partial rotary; tests/fixtures/families/phi3) quantized by `autoround
# quantize` into auto_round, auto_gptq and auto_awq: q/k/v and gate/up are tuned as separate
# slots and written fused as the checkpoint had them (qkv_proj [q; k; v] and gate_up_proj
# [gate; up], one packed tensor each, no q_proj / gate_proj names), and each checkpoint reads back
# to the same perplexity (`autoround eval` splits the fused tensors again). From the GGUF of it that
# llama.cpp's converter writes: gguf:q8_0 / gguf:q4_k_m with the fused tensors from tuned codes.
# usage: cli_phi3_test.sh AUTOROUND FIXTURES_DIR WORK_DIR
set -euo pipefail
autoround=$1 model=$2/families/phi3 work=$3
rm -rf "$work" && mkdir -p "$work"
"$autoround" quantize --model "$model" --calibration "$model/text.tokens" --output "$work/out" --format auto_round,auto_gptq,auto_awq \
  --nsamples 3 --seqlen 16 --iters 20 --batch-size 1 --group-size 32 >"$work/quantize.log" 2>&1 ||
  { echo "cli_phi3: quantize failed"; cat "$work/quantize.log"; exit 1; }
for format in auto_round auto_gptq auto_awq; do
  "$autoround" eval --model "$work/out/$format" --text "$model/text.tokens" --context 16 | awk '/^perplexity/ { print $2 }' >"$work/$format.ppl"
done
"$autoround" eval --model "$model" --text "$model/text.tokens" --context 16 | awk '/^perplexity/ { print $2 }' >"$work/float.ppl"
python3 - "$work" <<'PY'
import json, struct, sys
work = sys.argv[1]
for fmt in ("auto_round", "auto_gptq", "auto_awq"):
    with open(f"{work}/out/{fmt}/model.safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    for b in range(2):
        p = f"model.layers.{b}."
        assert not any(k.startswith(p + "self_attn.q_proj") or k.startswith(p + "mlp.gate_proj") for k in header), fmt
        qkv, gate_up = header[p + "self_attn.qkv_proj.qweight"]["shape"], header[p + "mlp.gate_up_proj.qweight"]["shape"]
        # 4-bit words: GPTQ-style [in * 4 / 32, out], AWQ [in, out * 4 / 32]; q 64 + k 32 + v 32 rows, gate 96 + up 96
        assert qkv == ([64, 16] if fmt == "auto_awq" else [8, 128]), (fmt, qkv)
        assert gate_up == ([64, 24] if fmt == "auto_awq" else [8, 192]), (fmt, gate_up)
ppl = {f: float(open(f"{work}/{f}.ppl").read()) for f in ("float", "auto_round", "auto_gptq", "auto_awq")}
assert ppl["auto_round"] == ppl["auto_gptq"] == ppl["auto_awq"], ppl
assert abs(ppl["auto_round"] / ppl["float"] - 1) < 0.05, ppl
print("cli_phi3: fused qkv_proj / gate_up_proj in three formats; perplexity %.4f float, %.4f each checkpoint" % (ppl["float"], ppl["auto_round"]))
PY
# from the GGUF llama.cpp's converter wrote (model.gguf: attn_qkv, ffn_up holding gate and up):
# gguf:q8_0 and gguf:q4_k_m, each fused tensor holding its layers' tuned codes (4 per block; the
# 9 others are embeddings, norms, LongRoPE's factors), read back near the source
bash "$(dirname "$0")/support/gguf_family_readback.sh" cli_phi3 "$autoround" "$model/model.gguf" "$model/text.tokens" "$work" 8
rm -rf "$work"
