#pragma once
// Activation quantization of the linear layers' inputs, for the W4A4 / W8A8 floating-point
// schemes (MXFP4, MXFP8, NVFP4, FP8_STATIC, FP8_BLOCK): each input row is quantized in groups along its features before
// the layer multiplies it, as auto-round's WrapperLinear does while tuning (act_bits <= 8) and its
// inference modules do when they run the checkpoint (auto_round/experimental/qmodules/mx.py,
// nvfp4.py). A block's four inputs: the normed hidden state (q, k, v), the attention result
// (o_proj), the second normed state (gate, up), the MLP product (down_proj).
//   MX: dynamic, the weights' own formula with v = 0 and max_scale = 1 (quant_mx); the _RCEIL
//       presets round the shared exponent up instead (quant_mx_rceil, QuantSpec::act_rceil).
//   NVFP4: nv_fp4_with_static_gs: the global scale is 2688 over the largest |input| the layer saw
//          in calibration (one per input, measured before the block is tuned).
//   FP8_STATIC: one scale per input, s = max(max|input| / 448, 1 / (448 · 512)) from the same
//          measurement, x -> E4M3(clamp(x / s, ±448)) · s (quant_fp8_sym with tensor_max). The
//          reference also tunes a factor on max|input| (act_max_scale, initially 1); we keep it 1.
//   FP8_BLOCK: dynamic, one scale per token and 128 features (the whole row below 128),
//          s = max(max|x| / 448, 1 / (448 · 512)) (quant_fp8_sym with group_size 128).
// The backward is autograd's through the reference's functions (`backward`): each element's
// rounding straight through but its clamps and MX exponent as written, and the group's largest
// magnitude's share through the scale; the CUDA block run computes the same (float_formulas.hpp).
// Not done: FP8_STATIC's tuned factor on the calibrated maximum (act_max_scale, one per layer in
// the reference; ours stays 1). A mixture of experts' router (and a shared expert's gate) sees the
// unquantized input, as the reference's (unwrapped Linears); every expert's gate and up read the
// quantized one and its down its quantized product (model/moe_mlp.hpp: the reference's unfused
// expert Linears, each wrapped). NVFP4's global scale and FP8_STATIC's input scale are the
// reference's per layer: one per input kind for the block's own layers (the layers of a kind share
// their input), each expert's own for the experts (ActivationQuant::experts, from its measured
// inputs or the checkpoint's scales); the CUDA block run computes the same.
#include <algorithm>
#include <array>
#include <optional>
#include <span>
#include <vector>

#include "../core/fp16.hpp"
#include "../core/matrix.hpp"
#include "../quantizer/float_quantizer.hpp"

namespace autoround {

/// The four inputs of a block's linear layers, in order.
enum class LinearInput : int { Attention = 0, AttentionOutput = 1, Mlp = 2, MlpProduct = 3 };

/// A mixture of experts' expert's own static input scales (NVFP4's global scale, FP8_STATIC's
/// scale), [0] for its gate/up input, [1] for its down input; 0: none (the block's are used); and
/// whether that input stays float (the layers reading it are not quantized: the reference
/// quantizes a Linear's input only where it quantizes the Linear; gate and up: quantized when
/// either is).
struct ExpertInputScales {
  std::array<float, 2> global_scale{}, input_scale{};
  std::array<bool, 2> float_input{};
};

struct ActivationQuant {
  DynamicFloatQuantizer quantizer{float_spec(FloatFormat::MxFp4)};
  std::array<float, 4> global_scale{};  ///< NVFP4: per LinearInput, 2688 / its calibration max |x|
  std::array<float, 4> input_scale{};   ///< FP8_STATIC: per LinearInput, max(max |x| / 448, 1 / (448 · 512))
  /// A mixture of experts: each expert's own (routed 0 .. E−1, then a shared one), as the
  /// reference's inference modules hold one per Linear; empty: every expert uses the block's.
  std::vector<ExpertInputScales> experts;
  std::array<bool, 4> float_input{};  ///< per LinearInput: left unquantized (apply and backward do nothing)
  /// FP8_STATIC read from an auto-round checkpoint: each quantized value (E4M3 code × scale)
  /// rounded to bfloat16, as auto-round 0.16.1's runtime Linear computes it in any model dtype
  /// (tuning, as the reference's, keeps float32)
  bool bf16_product = false;

  /// Expert e's quantization: the block's, with e's own static scales for Mlp and MlpProduct.
  ActivationQuant for_expert(std::size_t e) const {
    ActivationQuant a{quantizer, global_scale, input_scale, {}, float_input, bf16_product};
    if (e >= experts.size()) return a;
    const auto set = [](float& to, float from) { to = from > 0.0f ? from : to; };
    for (std::size_t k = 0; k < 2; ++k) {
      const auto i = static_cast<std::size_t>(k == 0 ? LinearInput::Mlp : LinearInput::MlpProduct);
      set(a.global_scale[i], experts[e].global_scale[k]);
      set(a.input_scale[i], experts[e].input_scale[k]);
      a.float_input[i] = experts[e].float_input[k];
    }
    return a;
  }

  /// Expert e's static scales from its inputs' largest |x| (gate/up's, down's), as activation_quant_for.
  void set_expert_maxima(std::size_t e, float mlp_absmax, float product_absmax) {
    if (experts.size() <= e) experts.resize(e + 1);
    const float absmax[2] = {mlp_absmax, product_absmax};
    for (std::size_t k = 0; k < 2; ++k) {
      if (absmax[k] <= 0.0f) continue;
      experts[e].global_scale[k] = 2688.0f * (1.0f / absmax[k]);
      experts[e].input_scale[k] = fp8_input_scale(absmax[k]);
    }
  }

  /// Quantize-dequantize x's rows in place.
  void apply(RowMatrix& x, LinearInput input) const {
    if (float_input[static_cast<std::size_t>(input)]) return;
    const float_formulas::FloatParams p = params(input);
    const float s = static_scale(input);
    for_each_group(x.rows(), x.cols(), [&](Index at, Index n) {
      const std::span<float> g(x.data() + at, static_cast<std::size_t>(n));
      if (s > 0.0f) {
        for (float& v : g) v = float_formulas::fp8_static_qdq(v, s);
        if (bf16_product)
          for (float& v : g) v = bf16_bits_to_float(float_to_bf16_bits(v));
        return;
      }
      const GroupQuant gq = p.activation_group_quant(group_range(g));
      for (float& v : g) v = p.fake_quantize(v, 0.0f, gq);
    });
  }

  /// dL/dx from dL/d apply(x), in place in `grad` (x: the input before apply, same shape).
  void backward(const RowMatrix& x, RowMatrix& grad, LinearInput input) const {
    detail::require(x.rows() == grad.rows() && x.cols() == grad.cols(), "ActivationQuant::backward: input and gradient shapes differ");
    if (float_input[static_cast<std::size_t>(input)]) return;
    const float_formulas::FloatParams p = params(input);
    const float s = static_scale(input);
    for_each_group(x.rows(), x.cols(), [&](Index at, Index n) {
      const float* xs = x.data() + at;
      float* g = grad.data() + at;
      if (s > 0.0f) {
        for (Index i = 0; i < n; ++i) g[i] = float_formulas::fp8_static_backward(xs[i], s, g[i]);
        return;
      }
      p.activation_group_backward(xs, g, g, static_cast<int>(n));
    });
  }

  /// FP8_STATIC's one scale for the whole input; 0 for the grouped formats.
  float static_scale(LinearInput input) const {
    return quantizer.format() == FloatFormat::Fp8 ? input_scale[static_cast<std::size_t>(input)] : 0.0f;
  }

  /// The formulas' parameters for one input (NVFP4: that input's global scale).
  float_formulas::FloatParams params(LinearInput input) const {
    float_formulas::FloatParams p = quantizer.activation_params();
    if (quantizer.has_global_scale()) p.global_scale = global_scale[static_cast<std::size_t>(input)];
    return p;
  }

 private:
  /// f(offset, length) for each group of a row-major [rows, cols] input: each row's runs of
  /// group_size features (FP8_STATIC, one scale: the whole row), rows in parallel.
  template <class F>
  void for_each_group(Index rows, Index cols, F&& f) const {
    const Index group = quantizer.format() == FloatFormat::Fp8 ? cols : quantizer.group_size();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (Index t = 0; t < rows; ++t)
      for (Index c = 0; c < cols; c += group) f(t * cols + c, std::min(group, cols - c));
  }
};

/// The activation quantization the reference's preset pairs with a weight scheme, if any
/// (MXFP4, MXFP8: dynamic MX; NVFP4: static-global-scale NVFP4; FP8_STATIC: static per-tensor
/// FP8); `input_absmax` per LinearInput.
inline std::optional<ActivationQuant> activation_quant_for(const QuantSpec& weights, const std::array<float, 4>& input_absmax = {}) {
  if (weights.data_type == DataType::Int || weights.act_bits > 8) return std::nullopt;
  ActivationQuant a{DynamicFloatQuantizer(weights), {}, {}, {}, {}, false};
  for (std::size_t i = 0; i < 4; ++i) {
    a.global_scale[i] = input_absmax[i] > 0.0f ? 2688.0f * (1.0f / input_absmax[i]) : 1.0f;
    a.input_scale[i] = fp8_input_scale(input_absmax[i]);
  }
  return a;
}

/// What a block's activation quantization is made from, gathered layer by layer: the scheme of
/// its quantized linear layers and, per LinearInput, the largest |input| measured for them; an
/// input no quantized layer reads stays float (the reference quantizes a Linear's input only
/// where it quantizes the Linear: `--layer 'down_proj=fp'` under W4A4 keeps down_proj's input).
/// An input read by quantized and float layers alike (q_proj float beside k/v quantized) is
/// quantized for all of them here: an approximation of the reference, which feeds the float one
/// the float input.
/// (The tuning runs, CPU and CUDA, and the dequantized results all build it this way.)
class InputMaxima {
 public:
  void add(const QuantSpec& spec, LinearInput input, float absmax) {
    spec_ = spec;
    float& m = absmax_[static_cast<std::size_t>(input)];
    m = std::max(m, absmax);
    quantized_[static_cast<std::size_t>(input)] = true;
  }
  /// A mixture of experts' expert count (routed and shared): an expert none of whose layers is
  /// added keeps its inputs in float.
  void experts(std::size_t n) { experts_.resize(std::max(experts_.size(), n)); }
  /// A quantized layer of an expert (`expert`: routed 0 .. E−1, then a shared one): its own maxima.
  void add_expert(const QuantSpec& spec, std::size_t expert, LinearInput input, float absmax) {
    spec_ = spec;
    if (experts_.size() <= expert) experts_.resize(expert + 1);
    const std::size_t k = input == LinearInput::MlpProduct ? 1 : 0;
    experts_[expert].absmax[k] = std::max(experts_[expert].absmax[k], absmax);
    experts_[expert].quantized[k] = true;
  }
  std::optional<ActivationQuant> activation_quant() const {
    if (!spec_) return std::nullopt;
    auto a = activation_quant_for(*spec_, absmax_);
    if (!a) return a;
    for (std::size_t i = 0; i < 4; ++i) a->float_input[i] = !quantized_[i];  // no quantized layer reads it
    for (std::size_t e = 0; e < experts_.size(); ++e) {
      a->set_expert_maxima(e, experts_[e].absmax[0], experts_[e].absmax[1]);
      for (std::size_t k = 0; k < 2; ++k) a->experts[e].float_input[k] = !experts_[e].quantized[k];
    }
    return a;
  }

 private:
  struct Expert {
    std::array<float, 2> absmax{};
    std::array<bool, 2> quantized{};
  };
  std::optional<QuantSpec> spec_;
  std::array<float, 4> absmax_{};
  std::array<bool, 4> quantized_{};
  std::vector<Expert> experts_;
};

}  // namespace autoround
