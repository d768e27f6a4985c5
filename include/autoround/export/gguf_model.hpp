#pragma once
// A quantized GGUF model for llama.cpp: the source GGUF's metadata (architecture, tokenizer, ...)
// copied in order with general.file_type set, and every tensor re-encoded:
//   - norms (1-D) as F32;
//   - a linear layer whose AutoRound scheme *is* the block type keeps its tuned codes and scales
//     (encode_tuned): W4G32 sym = Q4_0, W4G32 asym = Q4_1, W5G32 = Q5_0 / Q5_1, W8G32 sym = Q8_0,
//     and the double-quantized k-quant schemes (DoubleQuantizer, gguf_tuning_overrides) = Q2_K..Q6_K;
//   - every other 2-D tensor is quantized from the source's float weights with llama.cpp's
//     reference quantizer (round-to-nearest);
//   - output.weight as Q6_K (Q8_0 for q8_0 files), as llama.cpp does; with tied embeddings
//     token_embd.weight is the output matrix and gets the same rule;
//   - "q4_k_m": attn_v and ffn_down use Q6_K in the layers llama.cpp's use_more_bits picks;
//   - rows that are not a multiple of 256 cannot hold k-quants; like llama.cpp we fall back:
//     Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and Q2_K/Q3_K -> Q4_0 (llama.cpp: IQ4_NL).
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "../format/gguf_reader.hpp"
#include "../format/gguf_writer.hpp"
#include "../pack/ggml_quantize.hpp"
#include "../pack/ggml_tuned_kquant.hpp"
#include "quantized_llama.hpp"

namespace autoround {

struct GgufScheme {
  std::string name;            ///< "q4_0", "q4_k_m", ...
  ggml::Type base;             ///< the type of most tensors
  bool more_bits_mix = false;  ///< the _m mix (Q6_K for some attn_v / ffn_down)
  std::uint32_t file_type = 0; ///< llama.cpp's LLAMA_FTYPE_MOSTLY_* for general.file_type
};

inline GgufScheme gguf_scheme(const std::string& name) {
  using T = ggml::Type;
  if (name == "q4_0") return {name, T::Q4_0, false, 2};
  if (name == "q4_1") return {name, T::Q4_1, false, 3};
  if (name == "q8_0") return {name, T::Q8_0, false, 7};
  if (name == "q5_0") return {name, T::Q5_0, false, 8};
  if (name == "q5_1") return {name, T::Q5_1, false, 9};
  if (name == "q2_k") return {name, T::Q2_K, false, 10};
  if (name == "q3_k" || name == "q3_k_s") return {name, T::Q3_K, false, 11};
  if (name == "q4_k" || name == "q4_k_s") return {name, T::Q4_K, false, 14};
  if (name == "q4_k_m") return {name, T::Q4_K, true, 15};
  if (name == "q5_k" || name == "q5_k_s") return {name, T::Q5_K, false, 16};
  if (name == "q6_k") return {name, T::Q6_K, false, 18};
  throw Error("gguf:" + name + ": unknown GGUF type (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q4_k_m, q5_k, q6_k)");
}

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

namespace detail {
inline ggml::Type fit_row(ggml::Type t, Index cols) {
  using T = ggml::Type;
  if (cols % ggml::QK_K == 0 || ggml::traits(t).block_weights != static_cast<std::size_t>(ggml::QK_K)) return t;
  switch (t) {
    case T::Q4_K: return T::Q5_0;
    case T::Q5_K: return T::Q5_1;
    case T::Q6_K: return T::Q8_0;
    default: return T::Q4_0;
  }
}
/// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
inline bool use_more_bits(Index layer, Index layers) {
  return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}
}  // namespace detail

/// The block type a tensor of the source gets under `scheme` (llama.cpp's choices, above).
/// `block`/`linear`: set for the blocks' linear layers.
inline ggml::Type gguf_tensor_type(const GgufScheme& scheme, Index cols, std::optional<Index> block,
                                   std::optional<Linear> linear, Index layers, bool is_output) {
  ggml::Type type = scheme.base;
  if (is_output) type = scheme.base == ggml::Type::Q8_0 ? ggml::Type::Q8_0 : ggml::Type::Q6_K;
  if (scheme.more_bits_mix && block && linear && (*linear == Linear::Value || *linear == Linear::Down) &&
      detail::use_more_bits(*block, layers))
    type = ggml::Type::Q6_K;
  return detail::fit_row(type, cols);
}

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
      const ggml::Type type = gguf_tensor_type(scheme, w.cols(), b, l, layers, false);
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

  std::vector<GgufTensorChoice> choices;
  const Index layers = q.model.config.layers;
  // the source's float values, dequantized only for the tensors that are re-quantized from them
  const auto quantized_from_source = [&](const GgufTensor& t, ggml::Type type) {
    const RowMatrix x = source.to_float(t);
    return ggml::quantize(type, std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
  };
  for (const GgufTensor& t : source.tensors()) {
    if (t.dims.size() == 1) {
      w.add_tensor(t.name, t.dims, ggml::Type::F32, quantized_from_source(t, ggml::Type::F32));
      choices.push_back({t.name, ggml::Type::F32});
      continue;
    }
    // blk.N.<linear>.weight: is there a tuned result that this type stores exactly?
    std::optional<Index> block;
    std::optional<Linear> linear;
    if (t.name.rfind("blk.", 0) == 0) {
      const auto dot = t.name.find('.', 4);
      const std::string number = t.name.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
      if (!number.empty() && number.size() < 10 && number.find_first_not_of("0123456789") == std::string::npos) {
        block = std::stoll(number);
        for (Linear l : all_linears)
          if (t.name.substr(dot + 1) == std::string(gguf_name(l)) + ".weight") linear = l;
      }
    }
    const bool is_output = t.name == "output.weight" || (t.name == "token_embd.weight" && !source.find_tensor("output.weight"));
    const ggml::Type type = gguf_tensor_type(scheme, t.cols(), block, linear, layers, is_output);
    if (block && linear && *block < static_cast<Index>(q.layers.size())) {
      const auto& tuned = q.quantized(*block, *linear);
      if (tuned && exact_spec_for(type) == tuned->quantizer.spec()) {
        const auto encoded = [&] {
          if constexpr (SuperGroupQuantizer<Q>)
            if (tuned->quantizer.double_quantized()) return ggml::encode_tuned(type, double_quant_view(*tuned), t.name);
          return ggml::encode_tuned(type, int_view(*tuned), t.name);
        }();
        w.add_tensor(t.name, t.dims, type, encoded);
        choices.push_back({t.name, type, true});
        continue;
      }
    }
    w.add_tensor(t.name, t.dims, type, quantized_from_source(t, type));
    choices.push_back({t.name, type});
  }
  w.write(path);
  return choices;
}

}  // namespace autoround
