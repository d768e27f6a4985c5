#!/usr/bin/env python3
"""Write tests/fixtures/reference.safetensors with the reference `safetensors` package
(pip install safetensors==0.4.5 numpy): several dtypes, shapes and names, and one metadata key,
so that tests/test_safetensors.cpp can check that our writer produces the same bytes and our
reader the same values. Values are simple formulas the C++ test recomputes.
usage: make_safetensors_fixture.py OUT.safetensors
"""
import sys

import numpy as np
from safetensors.numpy import save_file

tensors = {
    "model.layers.0.self_attn.q_proj.weight": (np.arange(24, dtype=np.float32).reshape(4, 6) - 11.5) / 8,
    "model.layers.0.self_attn.q_proj.qweight": (np.arange(6, dtype=np.int64).reshape(2, 3) * 123456789 - 300000000).astype(np.int32),
    "model.layers.0.self_attn.q_proj.scales": (np.arange(6, dtype=np.float32).reshape(2, 3) / 16 + 0.25).astype(np.float16),
    "model.norm.weight": np.array([1.0, -2.5, 0.125], dtype=np.float32),
    "lm_head.codes": np.arange(5, dtype=np.uint8) * 50,
    "empty": np.zeros((0, 3), dtype=np.float32),
}
save_file(tensors, sys.argv[1], metadata={"format": "pt"})
