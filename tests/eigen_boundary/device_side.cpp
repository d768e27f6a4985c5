#include "device_side.hpp"

namespace {
// A matrix this library allocates, returned by value as QuantizedWeight::dequantize() does.
autoround::RowMatrix filled(Eigen::Index rows, Eigen::Index cols, float value) {
  return autoround::RowMatrix::Constant(rows, cols, value);
}
}  // namespace

void replace_weights_across_boundary(autoround::LlamaModel& model) {
  for (autoround::LlamaBlock& block : model.blocks) {
    // as quantize_model does: a move assignment hands the caller's buffer to the temporary,
    // which this library frees, and keeps the buffer this library allocated
    for (autoround::Linear l : autoround::all_linears) block[l] = filled(block[l].rows(), block[l].cols(), 0.5f);
    block.attn_norm.resize(block.attn_norm.size() + 1);  // freed and reallocated here
  }
}
