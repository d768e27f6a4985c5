#pragma once
// Mixed precision at an average bit width (the reference's AutoScheme: `--avg-bits 2.5
// --options W2A16,W3A16`): each linear layer of the blocks takes one of the candidate schemes so
// that the bits of all of them average at most `avg_bits` per weight and the estimated rise of
// the loss is smallest. The estimate is the factored Fisher's (tune/fisher_factors.hpp) of
// round-to-nearest under each scheme (the reference scores round to nearest too, with its own,
// first-order measure); the choice is tune/budget_allocation.hpp's. Tuning then runs as usual with
// the chosen scheme per layer (LayerOverride).
//
// Bits are counted as the reference counts them (auto_round/auto_scheme/utils.py): per layer
// bits · weights + groups · (16 + bits) — a 16-bit scale and a zero point of `bits` bits per group,
// the zero point counted for symmetric schemes too — or, with `weights_only` (its
// ignore_scale_zp_bits), bits · weights. The budget is avg_bits times the blocks' linear weights;
// embeddings and the LM head are outside it.
#include <cstdint>
#include <string>
#include <vector>

#include "../backend/cpu.hpp"
#include "../core/error.hpp"
#include "../model/llama_model.hpp"
#include "../model/model_source.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "budget_allocation.hpp"
#include "fisher_factors.hpp"
#include "model_quantizer.hpp"
#include "tunable_weight.hpp"

namespace autoround {

/// Bits a [rows, cols] layer takes under integer scheme `s` (see above).
inline std::uint64_t scheme_bits(const QuantSpec& s, Index rows, Index cols, bool weights_only) {
  const auto weights = static_cast<std::uint64_t>(rows * cols);
  const Index per_row = s.group_size == PerChannel ? 1 : (cols + s.group_size - 1) / s.group_size;
  const auto groups = static_cast<std::uint64_t>(rows * per_row);
  const auto bits = static_cast<std::uint64_t>(s.bits);
  return bits * weights + (weights_only ? 0 : groups * (16 + bits));
}

/// One layer's candidates and the choice.
struct LayerSchemeChoice {
  std::string name;                 ///< the Hugging Face name: model.layers.3.self_attn.q_proj
  std::vector<std::uint64_t> bits;  ///< per option
  std::vector<double> loss_rise;    ///< per option: the estimated rise of the mean loss (nats per token)
  std::size_t chosen = 0;
};

struct SchemePlan {
  std::vector<LayerOverride> overrides;  ///< one exact-name override per layer not on the first option
  std::vector<LayerSchemeChoice> layers;
  double avg_bits = 0;                   ///< what the choice averages, counted as asked
  double loss_rise = 0;
};

/// Each block linear layer's scheme among `options` (integer schemes; the first is the run's own)
/// at `avg_bits` per weight on average. Dense models.
template <ModelSource S>
SchemePlan plan_avg_bits(const S& source, const ModelFisher& fisher, const std::vector<QuantSpec>& options, double avg_bits,
                         bool weights_only = false) {
  const LlamaConfig& c = source.config();
  detail::require(!options.empty(), "--options: no candidate schemes");
  detail::require(static_cast<Index>(fisher.blocks.size()) == c.layers, "plan_avg_bits: the Fisher information is of another model");
  for (const QuantSpec& o : options) {
    detail::require(o.data_type == DataType::Int && o.super_group_size == 0, "--options: integer schemes only (W2A16, W3A16, W4A16, W8A16, BITS:GROUP:sym|asym)");
    DynamicIntQuantizer check(o);
  }
  SchemePlan plan;
  std::uint64_t weights = 0;
  std::vector<std::vector<BudgetOption>> items;
  for (Index b = 0; b < c.layers; ++b) {
    const LlamaBlock block = source.block(b);
    detail::require(!block.moe, source.name() + ": a mixture of experts: --avg-bits is not built for experts yet (issue #27)");
    for (Linear l : all_linears) {
      const RowMatrix& w = block[l];
      LayerSchemeChoice choice;
      choice.name = layer_name(b, l);
      std::vector<BudgetOption> item;
      for (const QuantSpec& o : options) {
        RowMatrix q(w.rows(), w.cols());
        TunableWeight<DynamicIntQuantizer> rtn(DynamicIntQuantizer(o), MatrixView(w.data(), w.rows(), w.cols()), choice.name);
        rtn.forward(Cpu{}, MutableMatrixView(q.data(), q.rows(), q.cols()));
        choice.bits.push_back(scheme_bits(o, w.rows(), w.cols(), weights_only));
        choice.loss_rise.push_back(fisher.of(b, l).loss_rise(w, q));
        item.push_back({choice.bits.back(), choice.loss_rise.back()});
      }
      weights += static_cast<std::uint64_t>(w.size());
      plan.layers.push_back(std::move(choice));
      items.push_back(std::move(item));
    }
  }
  const auto budget = static_cast<std::uint64_t>(avg_bits * static_cast<double>(weights));
  if (smallest_total(items) > budget)
    throw Error("--avg-bits " + std::to_string(avg_bits) + ": below what the smallest option takes (" +
                std::to_string(static_cast<double>(smallest_total(items)) / static_cast<double>(weights)) +
                " bits per weight, counted " + (weights_only ? "without" : "with") + " scales and zero points)");
  const std::vector<std::size_t> chosen = allocate_budget(items, budget);
  std::uint64_t used = 0;
  for (std::size_t k = 0; k < plan.layers.size(); ++k) {
    LayerSchemeChoice& layer = plan.layers[k];
    layer.chosen = chosen[k];
    used += layer.bits[layer.chosen];
    plan.loss_rise += layer.loss_rise[layer.chosen];
    if (layer.chosen == 0) continue;
    std::string pattern = "^";
    for (char ch : layer.name) {
      if (ch == '.') pattern += '\\';
      pattern += ch;
    }
    plan.overrides.push_back({pattern + "$", options[layer.chosen]});
  }
  plan.avg_bits = static_cast<double>(used) / static_cast<double>(weights);
  return plan;
}

}  // namespace autoround
