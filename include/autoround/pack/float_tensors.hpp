#pragma once
// FloatQuantizer results as files store them.
//
// Hugging Face checkpoints (compressed-tensors' layout, which auto-round 0.16.1 writes for MXFP4,
// MXFP8 and NVFP4 under packing_format "auto_round:llm_compressor", and vLLM reads):
//   4-bit elements: weight_packed U8 [out, in/2], byte k of a row = code(2k) | code(2k+1) << 4
//                   (E2M1 codes, the even column in the low nibble);
//   8-bit elements: weight F8_E4M3 [out, in];
//   scales: MX: weight_scale U8 [out, in/32], E8M0 (2^(byte - 127));
//           NVFP4: weight_scale F8_E4M3 [out, in/16], weight_global_scale F32 [1] (gs: the
//           dequantized weight is code · scale / gs), input_global_scale F32 [1] (2688 over the
//           largest |input| the layer saw in calibration, for the activations' quantization);
//           FP8_STATIC: weight_scale BF16 [out] (one per row; the codes were computed with its
//           float32 value), input_scale BF16 [1] (max(max |input| / 448, 1 / (448 · 512))).
// GGUF (llama.cpp's block_mxfp4, type 39): per 32 weights of a row, 17 bytes: the E8M0 byte, then
//   16 bytes whose low nibbles hold elements 0-15 and high nibbles elements 16-31 (the same codes).
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/fp16.hpp"
#include "../quantizer/float_quantizer.hpp"
#include "../quantizer/quantized_weight.hpp"

namespace autoround {

struct FloatTensors {
  std::vector<std::uint8_t> weight;  ///< packed E2M1 pairs [out, in/2], or E4M3 bytes [out, in]
  std::vector<std::uint8_t> scale;   ///< E8M0 or E4M3 bytes [out, groups]
  float global_scale = 0.0f;         ///< NVFP4 only
  float input_global_scale = 0.0f;   ///< NVFP4 only
  bool packed_pairs = false;         ///< 4-bit elements (weight_packed)
  bool e4m3_scales = false;          ///< NVFP4 (F8_E4M3 scales), else E8M0 (U8)
  std::vector<std::uint16_t> bf16_scale;  ///< FP8_STATIC: the rows' scales in bfloat16 (`scale` empty)
  std::uint16_t bf16_input_scale = 0;     ///< FP8_STATIC with activations: the input scale in bfloat16
};

/// The compressed-tensors tensors of one layer. `name` is for errors.
template <auto F>
FloatTensors pack_float(const QuantizedWeight<FloatQuantizer<F>>& q, const std::string& name) {
  const FloatFormat format = q.quantizer.format();
  if (format == FloatFormat::Fp8) {  // FP8_STATIC: E4M3 codes as they are, bfloat16 row scales
    FloatTensors t;
    t.weight = q.codes;
    for (float sc : q.scales) t.bf16_scale.push_back(float_to_bf16_bits(sc));
    // no token reached the layer (an expert no calibration token was routed to): 1, as NVFP4's below
    t.bf16_input_scale = float_to_bf16_bits(q.input_absmax > 0.0f ? fp8_input_scale(q.input_absmax) : 1.0f);
    return t;
  }
  const Index rows = q.rows(), cols = q.cols(), group = q.layout.group_size();
  detail::require(cols % group == 0, name + ": in_features = " + std::to_string(cols) + " is not a multiple of the group size " +
                                         std::to_string(group));
  FloatTensors t;
  t.packed_pairs = q.quantizer.bits() == 4;
  t.e4m3_scales = format == FloatFormat::NvFp4;
  if (t.packed_pairs) {
    t.weight.resize(static_cast<std::size_t>(rows * cols / 2));
    for (std::size_t k = 0; k < t.weight.size(); ++k)
      t.weight[k] = static_cast<std::uint8_t>((q.codes[2 * k] & 15u) | (q.codes[2 * k + 1] & 15u) << 4);
  } else {
    t.weight = q.codes;
  }
  t.scale.resize(q.scales.size());
  for (std::size_t k = 0; k < q.scales.size(); ++k)
    t.scale[k] = t.e4m3_scales ? minifloat::e4m3_code(q.scales[k]) : minifloat::e8m0_code(q.scales[k]);
  if (format == FloatFormat::NvFp4) {
    t.global_scale = q.quantizer.global_scale();
    // no token reached the layer (an expert no calibration token was routed to): its input scale as 1
    t.input_global_scale = 2688.0f * (1.0f / (q.input_absmax > 0.0f ? q.input_absmax : 2688.0f));
  }
  return t;
}

/// llama.cpp's block_mxfp4 rows of an MXFP4 layer ([out, in/32] blocks of 17 bytes).
template <auto F>
std::vector<std::uint8_t> pack_ggml_mxfp4(const QuantizedWeight<FloatQuantizer<F>>& q, const std::string& name) {
  detail::require(q.quantizer.format() == FloatFormat::MxFp4, name + ": only MXFP4 layers pack into GGUF's mxfp4 blocks");
  detail::require(q.cols() % 32 == 0, name + ": in_features = " + std::to_string(q.cols()) + " is not a multiple of 32");
  const std::size_t blocks = static_cast<std::size_t>(q.rows() * q.cols() / 32);
  std::vector<std::uint8_t> out(blocks * 17);
  for (std::size_t b = 0; b < blocks; ++b) {
    std::uint8_t* block = out.data() + b * 17;
    const std::uint8_t* codes = q.codes.data() + b * 32;
    block[0] = minifloat::e8m0_code(q.scales[b]);
    for (int j = 0; j < 16; ++j) block[1 + j] = static_cast<std::uint8_t>((codes[j] & 15u) | (codes[j + 16] & 15u) << 4);
  }
  return out;
}

}  // namespace autoround
