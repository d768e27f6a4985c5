#!/usr/bin/env python3
"""Write tests/fixtures/reference_quants.gguf with the reference tools:
  - the container by gguf-py's GGUFWriter (pip install gguf==0.19.0), metadata of every type;
  - Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 blocks by gguf-py's numpy quantizers (gguf.quants.quantize);
  - Q2_K / Q3_K / Q4_K / Q5_K / Q6_K blocks (gguf-py has no k-quant quantizer) by llama.cpp
    itself: ggml_quantize_chunk from the libggml-base built by `pip install llama-cpp-python==0.3.36`
    (CMAKE_ARGS="-DGGML_NATIVE=OFF"; or GGML_BASE_LIB=path/to/libggml-base.so), i.e. quantize_row_*_ref
    of ggml-quants.c. The Q4_0..Q8_0 blocks
    from ggml are checked equal to gguf-py's here.
Each quantized tensor NAME comes with NAME.dequantized (F32), gguf-py's dequantization of it.
The input (tensor "input", F32 [8, 512]) is heavy-tailed noise with the cases that exercise the
search code: an all-zero row segment, a constant block, an all-positive block, a lone outlier.
usage: make_ggml_fixtures.py OUT.gguf
"""
import ctypes
import glob
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def make_input():
    rng = np.random.default_rng(1234)
    x = (rng.standard_t(4, size=(8, 512)) * 0.02).astype(np.float32)
    x[1, :256] = 0.0                  # a super-block of zeros
    x[2, 32:64] = 0.0125              # a constant block
    x[3, 64:96] = np.abs(x[3, 64:96]) + 0.01  # all-positive block (min > 0)
    x[4, 300] = 1.5                   # a lone outlier
    x[5, 0:16] = -x[5, 0:16] * 40     # a loud sub-block
    return x


def ggml_library():
    paths = [os.environ["GGML_BASE_LIB"]] if "GGML_BASE_LIB" in os.environ else []
    if not paths:  # the library inside the llama_cpp package
        import llama_cpp
        root = os.path.dirname(llama_cpp.__file__)
        paths = glob.glob(os.path.join(root, "**", "libggml-base.so*"), recursive=True)
    if not paths:
        raise SystemExit("libggml-base.so not found in the llama_cpp package")
    lib = ctypes.CDLL(paths[0])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


def ggml_quantize(lib, qtype, x):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = x.shape
    out = np.zeros((rows, cols // block * size), dtype=np.uint8)
    src = np.ascontiguousarray(x, dtype=np.float32)
    n = lib.ggml_quantize_chunk(int(qtype), src.ctypes.data, out.ctypes.data, 0, rows, cols, None)
    assert n == out.nbytes, (qtype, n, out.nbytes)
    return out


def main(path):
    x = make_input()
    lib = ggml_library()
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo")
    w.add_array("test.strings", ["a", "", "bc"])
    w.add_array("test.ints", [1, -2, 3])
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 1e-300)
    w.add_tensor("input", x)
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        q = gguf.quants.quantize(x, qtype)
        assert np.array_equal(q, ggml_quantize(lib, qtype, x)), f"gguf-py and ggml disagree on {qtype.name}"
        w.add_tensor(qtype.name.lower(), q, raw_dtype=qtype)
        w.add_tensor(qtype.name.lower() + ".dequantized", gguf.quants.dequantize(q, qtype))
    for qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        q = ggml_quantize(lib, qtype, x)
        back = gguf.quants.dequantize(q, qtype)
        assert back.shape == x.shape and np.isfinite(back).all()
        w.add_tensor(qtype.name.lower(), q, raw_dtype=qtype)
        w.add_tensor(qtype.name.lower() + ".dequantized", back)  # gguf-py's reading of the blocks
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1])
