"""Gemma 4's mixture of experts (the 26B-A4B's, enable_moe_block) as transformers 5.17 computes it,
for tests/test_moe_mlp.cpp: its own Gemma4TextRouter and Gemma4TextExperts modules on a small random
config (hidden 16, 6 experts of width 8, top 2, gelu_pytorch_tanh), in float64, on random inputs:
the router reads `h` (the residual stream: the module norms it without weight and multiplies by
router.scale / sqrt(hidden)), the experts read `x` (what pre_feedforward_layernorm_2 would give).
Writes tests/fixtures/gemma4_moe.safetensors: the modules' weights as the checkpoint names them
(router.proj.weight [E, H], router.scale [H], router.per_expert_scale [E], experts.gate_up_proj
[E, 2I, H], experts.down_proj [E, H, I]), h, x, and the outputs top_k_index, top_k_weights, out.
usage: python make_gemma4_moe_fixture.py OUT   (torch 2.11 + transformers 5.17, CPU)"""
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers.models.gemma4 import modeling_gemma4 as g4

torch.manual_seed(7)
config = transformers.Gemma4TextConfig(hidden_size=16, num_experts=6, top_k_experts=2, moe_intermediate_size=8,
                                       enable_moe_block=True, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6)
config._experts_implementation = "eager"
router = g4.Gemma4TextRouter(config).double()
experts = g4.Gemma4TextExperts(config).double()
with torch.no_grad():
    router.proj.weight.copy_(0.8 * torch.randn_like(router.proj.weight))
    router.scale.copy_(1.0 + 0.3 * torch.randn_like(router.scale))
    router.per_expert_scale.copy_(1.0 + 0.3 * torch.randn_like(router.per_expert_scale))
    experts.gate_up_proj.copy_(0.4 * torch.randn_like(experts.gate_up_proj))
    experts.down_proj.copy_(0.4 * torch.randn_like(experts.down_proj))
    for p in list(router.parameters()) + list(experts.parameters()):  # the float32 values the fixture stores
        p.copy_(p.float().double())
    tokens = 11
    h = torch.randn(tokens, 16).double()
    x = torch.randn(tokens, 16).double()
    probabilities, weights, index = router(h)
    out = experts(x, index, weights)
    top = torch.sort(probabilities, dim=-1, descending=True).values
    print("transformers", transformers.__version__, "torch", torch.__version__,
          "smallest top-2 / top-3 margin", float((top[:, 1] - top[:, 2]).min()))
f32 = lambda t: t.float().contiguous()
save_file({"router.proj.weight": f32(router.proj.weight), "router.scale": f32(router.scale),
           "router.per_expert_scale": f32(router.per_expert_scale), "experts.gate_up_proj": f32(experts.gate_up_proj),
           "experts.down_proj": f32(experts.down_proj), "h": f32(h), "x": f32(x),
           "top_k_index": index.to(torch.int32).contiguous(), "top_k_weights": f32(weights), "out": f32(out)},
          sys.argv[1], metadata={"reference": f"transformers {transformers.__version__} Gemma4TextRouter + Gemma4TextExperts, float64, CPU"})
print("wrote", sys.argv[1])
