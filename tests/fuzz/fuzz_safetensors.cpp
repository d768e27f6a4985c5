// libFuzzer harness: any bytes given to the safetensors reader either parse, with every view
// inside the buffer, or raise autoround::Error. Anything else (a crash, a sanitizer report,
// another exception type) is a bug. Seeds: tests/fuzz/corpus/safetensors.
#include <autoround/format/safetensors.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  try {
    const autoround::SafetensorsFile file("fuzz.safetensors", std::move(bytes));
    for (const auto& t : file.tensors()) {
      if (t.dtype == autoround::Dtype::F32 || t.dtype == autoround::Dtype::F16 || t.dtype == autoround::Dtype::BF16) {
        const autoround::RowMatrix m = file.to_float(t.name);
        volatile float sink = m.size() ? m.data()[m.size() - 1] : 0.0f;
        (void)sink;
      }
    }
  } catch (const autoround::Error&) {
  }
  return 0;
}
