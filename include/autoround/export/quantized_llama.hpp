#pragma once
// What the exporters read: a LLaMA model after quantize_model (its quantized linear weights
// replaced by their dequantized values, everything else as loaded) together with the quantized
// weights themselves and the options that produced them.
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "../model/llama_model.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "../tune/model_quantizer.hpp"

namespace autoround {

using BlockResults = std::array<std::optional<QuantizedWeight<DynamicIntQuantizer>>, 7>;

struct QuantizedLlama {
  const LlamaModel& model;
  const std::vector<BlockResults>& layers;  ///< per block, per Linear; empty = left in full precision
  const ModelQuantOptions& options;

  const std::optional<QuantizedWeight<DynamicIntQuantizer>>& quantized(Index block, Linear l) const {
    return layers.at(static_cast<std::size_t>(block))[static_cast<std::size_t>(l)];
  }
};

/// GGUF files store the rows of attn_q / attn_k permuted for llama.cpp's adjacent-pair RoPE
/// (convert_hf_to_gguf.py); Hugging Face checkpoints use the half-split layout. Row
/// h*hd + 2i + j of the GGUF layout is row h*hd + j*hd/2 + i of the HF layout. Returns, for each
/// HF row, the GGUF row it comes from. Per-row quantization commutes with this permutation.
inline std::vector<Index> hf_rows_from_gguf(Index rows, Index head_dim) {
  std::vector<Index> from(static_cast<std::size_t>(rows));
  const Index half = head_dim / 2;
  for (Index r = 0; r < rows; ++r) {
    const Index h = r / head_dim, k = r % head_dim, j = k / half, i = k % half;
    from[static_cast<std::size_t>(r)] = h * head_dim + 2 * i + j;
  }
  return from;
}

inline RowMatrix permute_rows(const RowMatrix& w, const std::vector<Index>& from) {
  RowMatrix out(w.rows(), w.cols());
  for (Index r = 0; r < w.rows(); ++r) out.row(r) = w.row(from[static_cast<std::size_t>(r)]);
  return out;
}

template <Quantizer Q>
QuantizedWeight<Q> permute_rows(const QuantizedWeight<Q>& q, const std::vector<Index>& from) {
  QuantizedWeight<Q> out = q;
  const auto cols = static_cast<std::size_t>(q.cols()), groups = static_cast<std::size_t>(q.layout.groups_per_row());
  for (Index r = 0; r < q.rows(); ++r) {
    const auto src = static_cast<std::size_t>(from[static_cast<std::size_t>(r)]), dst = static_cast<std::size_t>(r);
    std::copy_n(q.codes.begin() + static_cast<long>(src * cols), cols, out.codes.begin() + static_cast<long>(dst * cols));
    std::copy_n(q.scales.begin() + static_cast<long>(src * groups), groups, out.scales.begin() + static_cast<long>(dst * groups));
    std::copy_n(q.zeros.begin() + static_cast<long>(src * groups), groups, out.zeros.begin() + static_cast<long>(dst * groups));
  }
  return out;
}

}  // namespace autoround
