#pragma once
// A ModelSource over a model in memory, for tests of the streaming loop without files.
#include <autoround/autoround.hpp>
#include <span>
#include <string>

namespace test_models {

struct MemorySource {
  const autoround::LlamaModel* model;
  const autoround::LlamaConfig& config() const { return model->config; }
  autoround::LlamaBlock block(autoround::Index b) const { return model->blocks[static_cast<std::size_t>(b)]; }
  autoround::RowMatrix embedding_rows(std::span<const std::int32_t> tokens) const {
    autoround::RowMatrix rows(static_cast<autoround::Index>(tokens.size()), model->config.hidden);
    for (std::size_t i = 0; i < tokens.size(); ++i) rows.row(static_cast<autoround::Index>(i)) = model->embedding.row(tokens[i]);
    return rows;
  }
  autoround::RowMatrix embedding() const { return model->embedding; }
  Eigen::VectorXf final_norm() const { return model->final_norm; }
  autoround::RowMatrix output() const { return model->output; }
  autoround::RowMatrix output_rows(std::span<const std::int32_t> rows) const {
    autoround::RowMatrix out(static_cast<autoround::Index>(rows.size()), model->config.hidden);
    for (std::size_t i = 0; i < rows.size(); ++i) out.row(static_cast<autoround::Index>(i)) = model->output.row(rows[i]);
    return out;
  }
  std::string name() const { return "memory"; }
};
static_assert(autoround::ModelSource<MemorySource>);

}  // namespace test_models
