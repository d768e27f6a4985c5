// libFuzzer harness: any bytes given to the GGUF reader either parse, with every tensor
// dequantizable inside the buffer, or raise autoround::Error. Seeds: tests/fuzz/corpus/gguf.
#include <autoround/format/gguf_reader.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  try {
    const autoround::GgufFile file("fuzz.gguf", std::move(bytes));
    for (const auto& t : file.tensors()) {
      if (t.element_count > (1u << 20)) continue;  // keep each run fast; sizes were already checked
      const autoround::RowMatrix m = file.to_float(t);
      volatile float sink = m.size() ? m.data()[m.size() - 1] : 0.0f;
      (void)sink;
    }
  } catch (const autoround::Error&) {
  }
  return 0;
}
