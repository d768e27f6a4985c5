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

using BlockResults = LayerResults<DynamicIntQuantizer>;

/// `Q`: DynamicIntQuantizer (every format), or DynamicDoubleQuantizer (GGUF k-quants).
template <WeightQuantizer Q = DynamicIntQuantizer>
struct QuantizedLlama {
  const LlamaModel& model;
  const std::vector<LayerResults<Q>>& layers;  ///< per block, per linear slot; empty = left in full precision
  const ModelQuantOptions& options;

  const std::optional<QuantizedWeight<Q>>& quantized(Index block, Linear l) const {
    static const std::optional<QuantizedWeight<Q>> none;
    const LlamaBlock& b = model.blocks.at(static_cast<std::size_t>(block));
    const auto slot = own_slot_index(l, b.values_from_keys, b.kv_shared);
    return slot ? result_at(layers.at(static_cast<std::size_t>(block)), *slot) : none;
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

template <WeightQuantizer Q>
QuantizedWeight<Q> permute_rows(const QuantizedWeight<Q>& q, const std::vector<Index>& from) {
  QuantizedWeight<Q> out = q;
  if (q.layout.group_rows() > 1) {  // tiles (FP8_BLOCK): rows move within their tile, whose scale stays
    const Index band = q.layout.group_rows();
    for (Index r = 0; r < q.rows(); ++r) {
      const Index src = from[static_cast<std::size_t>(r)];
      detail::require(src / band == r / band, "permute_rows: row " + std::to_string(src) + " would leave its " + std::to_string(band) +
                                                  "-row tile (heads must not straddle FP8_BLOCK's tiles)");
      std::copy_n(q.codes.begin() + src * q.cols(), q.cols(), out.codes.begin() + r * q.cols());
    }
    return out;
  }
  const auto move_row = [&](const auto& in, auto& to, std::size_t per_row, std::size_t src, std::size_t dst) {
    if (!in.empty()) std::copy_n(in.begin() + static_cast<long>(src * per_row), per_row, to.begin() + static_cast<long>(dst * per_row));
  };
  const auto cols = static_cast<std::size_t>(q.cols()), groups = static_cast<std::size_t>(q.layout.groups_per_row());
  const auto supers = q.super_scales.size() / static_cast<std::size_t>(q.rows());
  for (Index r = 0; r < q.rows(); ++r) {
    const auto src = static_cast<std::size_t>(from[static_cast<std::size_t>(r)]), dst = static_cast<std::size_t>(r);
    move_row(q.codes, out.codes, cols, src, dst);
    move_row(q.scales, out.scales, groups, src, dst);
    move_row(q.zeros, out.zeros, groups, src, dst);
    move_row(q.mins, out.mins, groups, src, dst);
    move_row(q.super_scales, out.super_scales, supers, src, dst);
    move_row(q.super_mins, out.super_mins, supers, src, dst);
  }
  return out;
}

}  // namespace autoround
