#pragma once
// GELU's tanh form (transformers' gelu_pytorch_tanh, Gemma's MLP and experts) and its derivative,
// in one place for the dense block (block_math.hpp) and the experts (moe_mlp.hpp).
#include <cmath>

namespace autoround::detail {

/// gelu_tanh(g) = ½ g (1 + tanh(√(2/π)(g + 0.044715 g³))); its derivative from the tanh t:
/// ½ (1 + t) + ½ g (1 − t²) √(2/π) (1 + 3·0.044715 g²).
inline constexpr float gelu_k0 = 0.7978845608028654f, gelu_k1 = 0.044715f;

/// the tanh inside gelu_tanh(g), which the derivative reuses
inline float gelu_tanh_inner(float g) { return std::tanh(gelu_k0 * (g + gelu_k1 * g * g * g)); }

inline float gelu_tanh_derivative(float g, float t) {
  return 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * gelu_k0 * (1.0f + 3.0f * gelu_k1 * g * g);
}

}  // namespace autoround::detail
