"""Some blocks of a GGUF model, renumbered, every other tensor and setting as it is: the asset
model cut short (scripts/fetch-assets.sh), for the tests that check formats, files and the
command line rather than accuracy (docs/assets.md). Tensor bytes are copied, not requantized,
so each kept block is the full model's bit for bit. Needs gguf-py.
usage: python make_short_model.py SOURCE.gguf OUT.gguf BLOCKS   (BLOCKS: e.g. 0-3,28-29)"""
import sys

from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.constants import GGMLQuantizationType

source, out, spec = sys.argv[1:4]
reader = GGUFReader(source)
arch = reader.fields["general.architecture"].contents()
count = int(reader.fields[f"{arch}.block_count"].contents())
blocks = []
for part in spec.split(","):
    first, _, last = part.partition("-")
    blocks += range(int(first), int(last or first) + 1)
if not blocks or sorted(set(blocks)) != blocks or blocks[-1] >= count:
    sys.exit(f"make_short_model: {source} has {count} blocks; {spec} is not an increasing list of them")
renumber = {old: new for new, old in enumerate(blocks)}

writer = GGUFWriter(out, arch)
for key, field in reader.fields.items():
    if key.startswith("GGUF.") or key == "general.architecture":
        continue  # the writer's own
    if key == f"{arch}.block_count":
        writer.add_block_count(len(blocks))
        continue
    vtype = field.types[0]
    writer.add_key_value(key, field.contents(), vtype, field.types[-1] if vtype == GGUFValueType.ARRAY else None)


for t in reader.tensors:
    name = t.name
    if name.startswith("blk."):
        _, index, rest = name.split(".", 2)
        if int(index) not in renumber:
            continue
        name = f"blk.{renumber[int(index)]}.{rest}"
    if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        writer.add_tensor(name, t.data)
    else:  # block-quantized: the bytes as they are
        writer.add_tensor(name, t.data, raw_dtype=t.tensor_type)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
