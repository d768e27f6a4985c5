#pragma once
// A quantized GGUF model for llama.cpp: the source GGUF's metadata (architecture, tokenizer, ...)
// copied in order with general.file_type set, and every tensor re-encoded:
//   - norms (1-D) as F32 (F16 if the source has them so);
//   - a linear layer whose AutoRound scheme *is* the block type keeps its tuned codes and scales
//     (encode_tuned): W4G32 sym = Q4_0, W4G32 asym = Q4_1, W5G32 = Q5_0 / Q5_1, W8G32 sym = Q8_0,
//     and the double-quantized k-quant schemes (DoubleQuantizer, gguf_tuning_overrides) = Q2_K..Q6_K;
//   - every other 2-D tensor is quantized from the source's float weights with llama.cpp's
//     reference quantizer (round-to-nearest);
//   - each tensor gets the block type llama-quantize gives it under the same file type
//     (gguf_mix.hpp: output Q6_K, the _m mixes' attn_v / ffn_down, the fallbacks of rows that
//     cannot hold k-quants), so the file has llama-quantize's size to the byte.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "../format/gguf_reader.hpp"
#include "../format/gguf_writer.hpp"
#include "../pack/ggml_quantize.hpp"
#include "../pack/ggml_tuned_kquant.hpp"
#include "gguf_mix.hpp"
#include "quantized_llama.hpp"

namespace autoround {

/// The AutoRound scheme whose tuned weights a ggml type stores exactly, if any: the integer
/// schemes of Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and the double-quantized ones of Q2_K..Q6_K (the
/// latter need a DoubleQuantizer).
inline std::optional<QuantSpec> exact_spec_for(ggml::Type type) {
  using T = ggml::Type;
  switch (type) {
    case T::Q4_0: return QuantSpec{4, 32, Symmetric};
    case T::Q4_1: return QuantSpec{4, 32, Asymmetric};
    case T::Q5_0: return QuantSpec{5, 32, Symmetric};
    case T::Q5_1: return QuantSpec{5, 32, Asymmetric};
    case T::Q8_0: return QuantSpec{8, 32, Symmetric};
    default: return ggml::double_quant_spec_for(type);
  }
}
inline std::optional<QuantSpec> exact_spec_for(const GgufScheme& s) { return exact_spec_for(s.base); }

/// Per-layer schemes that make AutoRound tune every linear layer of `model` for the block type
/// it will be stored as (as the reference tunes gguf:q4_k_m with int_asym_dq for Q4_K layers,
/// int_sym_dq for Q6_K ones, and the fallback types' schemes): one exact-name override per
/// layer. Layers whose type has no tuned encoding stay in full precision while tuning.
/// Run quantize_model with DynamicDoubleQuantizer when any of them is a k-quant.
inline std::vector<LayerOverride> gguf_tuning_overrides(const GgufScheme& scheme, const LlamaModel& model) {
  std::vector<LayerOverride> overrides;
  const Index layers = model.config.layers;
  for (Index b = 0; b < layers; ++b)
    for (Linear l : all_linears) {
      const RowMatrix& w = model.blocks[static_cast<std::size_t>(b)][l];
      const ggml::Type type = gguf_tensor_type(scheme, w.cols(), b, l, model.config, false);
      std::string pattern = "^" + layer_name(b, l) + "$";
      for (std::size_t i = 0; i < pattern.size(); ++i)
        if (pattern[i] == '.') pattern.insert(i++, "\\");
      overrides.push_back({pattern, exact_spec_for(type)});
    }
  return overrides;
}

/// Whether any of those schemes needs double quantization (a DoubleQuantizer).
inline bool needs_double_quant(const std::vector<LayerOverride>& overrides) {
  return std::any_of(overrides.begin(), overrides.end(), [](const LayerOverride& o) { return o.spec && o.spec->super_group_size > 0; });
}

/// How each tensor of an export was stored: for the report and the tests.
struct GgufTensorChoice {
  std::string name;
  ggml::Type type;
  bool tuned = false;  ///< AutoRound's codes and scales, unchanged
};

template <WeightQuantizer Q>
std::vector<GgufTensorChoice> export_gguf_model(const QuantizedLlama<Q>& q, const GgufFile& source, const GgufScheme& scheme,
                                                const std::filesystem::path& path) {
  const std::uint64_t alignment = source.find("general.alignment") ? source.get_uint("general.alignment") : 32;
  GgufWriter w(alignment);
  for (const std::string& key : source.metadata_order()) w.set(key, source.metadata().at(key));
  w.set_u32("general.file_type", scheme.file_type);
  w.set_u32("general.quantization_version", 2);

  // The layout first (llama-quantize's type for every tensor is known before any is quantized),
  // then each tensor is made and streamed to the file: one tensor's bytes in memory at a time.
  std::vector<GgufTensorChoice> choices;
  for (const GgufTensor& t : source.tensors()) {
    ggml::Type type = t.type == ggml::Type::F16 ? ggml::Type::F16 : ggml::Type::F32;  // norms: as llama-quantize
    if (t.dims.size() > 1) {
      const auto [block, linear] = gguf_tensor_site(t.name);
      const bool is_output = t.name == "output.weight" || (t.name == "token_embd.weight" && !source.find_tensor("output.weight"));
      type = gguf_tensor_type(scheme, t.cols(), block, linear, q.model.config, is_output);
    }
    w.declare_tensor(t.name, t.dims, type);
    choices.push_back({t.name, type});
  }
  GgufStreamWriter stream(path, w);
  for (std::size_t i = 0; i < choices.size(); ++i) {
    const GgufTensor& t = source.tensors()[i];
    GgufTensorChoice& choice = choices[i];
    // blk.N.<linear>.weight: is there a tuned result that this type stores exactly?
    const auto [block, linear] = gguf_tensor_site(t.name);
    if (t.dims.size() > 1 && block && linear && *block < static_cast<Index>(q.layers.size())) {
      const auto& tuned = q.quantized(*block, *linear);
      if (tuned && exact_spec_for(choice.type) == tuned->quantizer.spec()) {
        const auto encoded = [&] {
          if constexpr (SuperGroupQuantizer<Q>)
            if (tuned->quantizer.double_quantized()) return ggml::encode_tuned(choice.type, double_quant_view(*tuned), t.name);
          return ggml::encode_tuned(choice.type, int_view(*tuned), t.name);
        }();
        stream.write(t.name, encoded);
        choice.tuned = true;
        continue;
      }
    }
    // the source's float values, dequantized only for the tensors that are re-quantized from them
    const RowMatrix x = source.to_float(t);
    stream.write(t.name, ggml::quantize(choice.type, std::span<const float>(x.data(), static_cast<std::size_t>(x.size()))));
  }
  stream.finish();
  return choices;
}

}  // namespace autoround
