#!/usr/bin/env python3
"""Check an auto_round checkpoint written from a mixture-of-experts model against the float
model it came from, with our own reading of the format (docs/formats.md), standard library only:
every routed expert's gate/up/down is stored per expert under the names transformers and the
reference use (model.layers.N.mlp.experts.E.{gate,up,down}_proj.{qweight,qzeros,scales}), the
router (mlp.gate.weight) is kept in float16 with the source's values, and each expert's
unpacked weights ((q - zero) * scale, 4-bit GPTQ-style packing, zero points stored as they are)
are close to that same expert's float weights and not to its neighbour's (a layer written under
the wrong expert's name would be). Prints one line per layer checked; exits 1 on a failure.

usage: check_moe_export.py SOURCE_DIR CHECKPOINT_DIR
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "support"))
import safetensors_file  # noqa: E402  (the CLI tests' reader)


def read_safetensors(path):
    header, numbers, _ = safetensors_file.read(path)

    def values(name):
        return list(numbers(name)), header[name]["shape"]
    return header, values


def dequantize(values, name, bits=4):
    qweight, (rows, out) = values(name + ".qweight")
    qzeros, (groups, _) = values(name + ".qzeros")
    scales, _ = values(name + ".scales")
    per = 32 // bits
    mask = (1 << bits) - 1
    inputs = rows * per
    group = inputs // groups
    w = [[0.0] * inputs for _ in range(out)]
    for i in range(inputs):
        for o in range(out):
            q = (qweight[(i // per) * out + o] >> ((i % per) * bits)) & mask
            g = i // group
            z = (qzeros[g * (out // per) + o // per] >> ((o % per) * bits)) & mask
            w[o][i] = (q - z) * scales[g * out + o]
    return w


def relative_error(a, b):
    num = sum((x - y) ** 2 for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    den = sum(y * y for rb in b for y in rb)
    return math.sqrt(num / den)


def main(source_dir, checkpoint_dir):
    _, src = read_safetensors(source_dir + "/model.safetensors")
    out_h, out = read_safetensors(checkpoint_dir + "/model.safetensors")
    config = json.load(open(source_dir + "/config.json"))
    experts, layers = config["num_experts"], config["num_hidden_layers"]
    failures = 0
    for layer in range(layers):
        p = "model.layers.%d.mlp." % layer
        router, _ = out(p + "gate.weight")
        source_router, _ = src(p + "gate.weight")
        if out_h[p + "gate.weight"]["dtype"] != "F16" or max(abs(a - b) for a, b in zip(router, source_router)) > 1e-3:
            print("FAIL %sgate.weight: not the source's router in float16" % p)
            failures += 1
        for proj in ("gate_proj", "up_proj", "down_proj"):
            for e in range(experts):
                name = p + "experts.%d.%s" % (e, proj)
                rows, shape = src(name + ".weight")
                original = [rows[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
                other = (e + 1) % experts
                rows, _ = src(p + "experts.%d.%s.weight" % (other, proj))
                neighbour = [rows[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
                w = dequantize(out, name)
                own, theirs = relative_error(w, original), relative_error(w, neighbour)
                ok = own < 0.25 and theirs > 0.8
                failures += not ok
                print("%s %s: relative error %.3f against its own float weights, %.3f against expert %d's" %
                      ("ok  " if ok else "FAIL", name, own, theirs, other))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
