"""What the make_llama_quantize_*.py scripts share: llama-quantize's file types, writing a
synthetic GGUF file out, the type llama-quantize gives each tensor of it, and the fixture's JSON.
(python: one with gguf-py and numpy, e.g. ~/.cache/autoround-cpp/pyenv/bin/python.)"""
import json
import os
import subprocess
import sys

from gguf import GGUFReader

TYPES = ["q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k", "q4_0", "q8_0"]
MADE_BY = "llama-quantize of llama.cpp vendored in llama-cpp-python 0.3.36 on "


def write_out(w):
    """A GGUFWriter's file: header, metadata, tensors, closed."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantized_types(quantize, source, target, file_type, overrides=(), widths=True):
    """llama-quantize SOURCE TARGET FILE_TYPE (with --tensor-type overrides), 2 threads: every 2-D and
    3-D tensor's type name, with its ne[0] when `widths` ([name, ne0]); the target is removed."""
    run = subprocess.run([quantize, *overrides, source, target, file_type, "2"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"llama-quantize {os.path.basename(target)}: {run.stderr[-2000:]}")
    types = {x.name: [x.tensor_type.name, int(x.shape[0])] if widths else x.tensor_type.name
             for x in GGUFReader(target).tensors if len(x.shape) >= 2}
    os.remove(target)
    return types


def save(fixture, out):
    with open(out, "w") as f:
        json.dump(fixture, f, indent=0, sort_keys=True)
        f.write("\n")
    print("wrote", out)
