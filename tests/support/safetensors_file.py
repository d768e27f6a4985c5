"""A safetensors file as the CLI tests read it (no numpy, no safetensors package: CI's python3
has neither): read(path) -> (header, values, data), the header without __metadata__, values(name)
a tensor's F32 / F16 / I32 numbers as a tuple, data the bytes after the header (byte-for-byte checks)."""
import json
import struct


def read(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    header.pop("__metadata__", None)

    def values(name):
        h = header[name]
        b, e = h["data_offsets"]
        fmt = {"F32": "f", "F16": "e", "I32": "i"}[h["dtype"]]
        return struct.unpack("<%d%s" % ((e - b) // struct.calcsize(fmt), fmt), data[b:e])

    return header, values, data
