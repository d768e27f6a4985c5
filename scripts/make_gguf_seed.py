#!/usr/bin/env python3
"""Write a tiny GGUF file with the reference writer (gguf-py's GGUFWriter, pip install gguf==0.19.0):
metadata of several types and F32 / F16 / Q8_0 tensors. It seeds the GGUF fuzzer's corpus and is
read back by tests/test_gguf_reader.cpp.  usage: make_gguf_seed.py OUT.gguf
"""
import sys

import numpy as np
import gguf
from gguf.quants import quantize

w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_block_count(2)
w.add_uint32("test.u32", 7)
w.add_float32("test.f32", 0.5)
w.add_bool("test.bool", True)
w.add_string("test.string", "héllo")
w.add_array("test.array", [1, 2, 3])
w.add_array("test.strings", ["a", "bc"])
w.add_tensor("f32", (np.arange(8, dtype=np.float32) - 3.5).reshape(2, 4))
w.add_tensor("f16", (np.arange(6, dtype=np.float32) / 4).astype(np.float16).reshape(3, 2))
q8 = (np.arange(64, dtype=np.float32) - 31.5) / 16
w.add_tensor("q8_0", quantize(q8.reshape(2, 32), gguf.GGMLQuantizationType.Q8_0),
             raw_dtype=gguf.GGMLQuantizationType.Q8_0)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
