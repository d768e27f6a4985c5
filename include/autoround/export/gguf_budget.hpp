#pragma once
// A GGUF file's per-tensor types chosen at a size budget by measured sensitivity: each linear
// layer, the LM head and the embedding may take any ggml type its rows can hold (Q2_K .. Q6_K,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0); the loss rise each type would cost is estimated from the
// calibration's Fisher information (tune/fisher_factors.hpp) and the error of llama.cpp's own
// quantizer for that type (round to nearest, pack/ggml_quantize.hpp: the tuned error is smaller,
// but it ranks the types alike); then the cheapest set that fits the budget is chosen
// (tune/budget_allocation.hpp). llama.cpp loads any mix of types. Norms and routers keep the
// mix's rule. The budget counts the whole file, header and alignment included, so the file
// written is at most that many bytes.
// A source that is itself quantized (a Q4_1 GGUF) re-encodes losslessly in its own type, which
// the estimate then rightly finds free: `allowed` leaves such a type out where that is not wanted
// (a comparison with llama-quantize's mixes, which never pick it).
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../format/gguf_reader.hpp"
#include "../format/gguf_writer.hpp"
#include "../model/model_source.hpp"
#include "../pack/ggml_quantize.hpp"
#include "../tune/budget_allocation.hpp"
#include "../tune/fisher_factors.hpp"
#include "gguf_model.hpp"

namespace autoround {

/// The types a size budget chooses among, smallest first.
inline const std::vector<ggml::Type>& gguf_budget_types() {
  using T = ggml::Type;
  static const std::vector<ggml::Type> types{T::Q2_K, T::Q3_K, T::Q4_0, T::Q4_K, T::Q4_1, T::Q5_0, T::Q5_K, T::Q5_1, T::Q6_K, T::Q8_0};
  return types;
}

/// A comma-separated list of those types' names ("q4_k,q5_k,q8_0"; any case).
inline std::vector<ggml::Type> parse_gguf_budget_types(const std::string& list) {
  std::vector<ggml::Type> types;
  std::string item;
  for (std::size_t i = 0; i <= list.size(); ++i) {
    if (i < list.size() && list[i] != ',') {
      item += static_cast<char>(std::toupper(static_cast<unsigned char>(list[i])));
      continue;
    }
    const auto& all = gguf_budget_types();
    const auto t = std::find_if(all.begin(), all.end(), [&](ggml::Type x) { return item == ggml::traits(x).name; });
    if (t == all.end())
      throw Error("--budget-types: '" + item + "' is not one of q2_k, q3_k, q4_0, q4_k, q4_1, q5_0, q5_k, q5_1, q6_k, q8_0");
    types.push_back(*t);
    item.clear();
  }
  return types;
}

/// The types of `allowed` (empty: all of gguf_budget_types) a tensor of rows of `cols` weights
/// can hold, smallest first.
inline std::vector<ggml::Type> gguf_budget_candidates(Index cols, const std::vector<ggml::Type>& allowed = {}) {
  std::vector<ggml::Type> fit;
  for (ggml::Type t : gguf_budget_types())
    if (cols % static_cast<Index>(ggml::traits(t).block_weights) == 0 &&
        (allowed.empty() || std::find(allowed.begin(), allowed.end(), t) != allowed.end()))
      fit.push_back(t);
  return fit;
}

/// The size of the file GgufBlockWriter writes from `source` under `scheme` (its tensor_types
/// included): the header (metadata, tensor infos, padding), then each tensor padded to the
/// alignment.
struct GgufFileSize {
  std::uint64_t header = 0, tensors = 0;
  std::uint64_t total() const { return header + tensors; }
};
inline GgufFileSize gguf_file_size(const GgufFile& source, const GgufScheme& scheme, const LlamaConfig& config) {
  GgufWriter writer(source.find("general.alignment") ? source.get_uint("general.alignment") : 32);
  for (const std::string& key : source.metadata_order()) writer.set(key, source.metadata().at(key));
  writer.set_u32("general.file_type", scheme.file_type);
  writer.set_u32("general.quantization_version", 2);
  const GgufExperts experts = gguf_experts(source);
  for (const GgufTensor& t : source.tensors()) writer.declare_tensor(t.name, t.dims, gguf_output_type(source, t, scheme, config, experts));
  GgufFileSize size;
  size.header = writer.header().size();
  for (const auto& t : writer.tensors()) size.tensors += writer.padded(t.byte_count());
  return size;
}

/// One tensor's candidates under a budget and the choice.
struct GgufTensorSensitivity {
  std::string name;
  std::vector<ggml::Type> types;
  std::vector<std::uint64_t> bytes;    ///< each type's bytes in the file (padded)
  std::vector<double> loss_rise;       ///< each type's estimated rise of the mean loss (nats per token)
  std::size_t chosen = 0;
};

struct GgufBudgetPlan {
  std::map<std::string, ggml::Type> types;      ///< for GgufScheme::tensor_types
  std::vector<GgufTensorSensitivity> tensors;   ///< in the file's order
  std::uint64_t budget = 0, file_bytes = 0;     ///< asked, and what the file will take
  double loss_rise = 0;                         ///< Σ of the chosen types' estimates
};

namespace detail {
/// `w` through llama.cpp's quantizer of `type` and back, rows in parallel chunks.
inline RowMatrix ggml_round_trip(ggml::Type type, const RowMatrix& w) {
  RowMatrix out(w.rows(), w.cols());
  const Index chunk = 64, chunks = (w.rows() + chunk - 1) / chunk;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index k = 0; k < chunks; ++k) {
    const Index first = k * chunk, rows = std::min(chunk, w.rows() - first);
    const std::span<const float> x(w.data() + first * w.cols(), static_cast<std::size_t>(rows * w.cols()));
    const std::vector<std::byte> bytes = ggml::quantize(type, x);
    ggml::dequantize(type, bytes, std::span<float>(out.data() + first * w.cols(), x.size()));
  }
  return out;
}
}  // namespace detail

/// Choose each linear layer's, the LM head's and the embedding's type so that the file written
/// from `file` (the source GGUF, whose model `source` reads) under `scheme` takes at most `budget`
/// bytes and the estimated loss rise is smallest, each among the `allowed` types (empty: all).
/// Dense models only.
template <ModelSource S>
GgufBudgetPlan plan_gguf_budget(const GgufFile& file, const S& source, GgufScheme scheme, const ModelFisher& fisher, std::uint64_t budget,
                                const std::vector<ggml::Type>& allowed = {}) {
  const LlamaConfig& c = source.config();
  detail::require(gguf_experts(file).count == 0, source.name() + ": a size budget for a mixture of experts is not built yet (issue #27)");
  for (const GgufTensor& t : file.tensors())
    detail::require(gguf_fused_layers(t.name, c.model_type).empty(),
                    source.name() + ": " + t.name + ": a size budget for tensors of several layers (phi3's attn_qkv, ffn_up) is not built yet");
  detail::require(static_cast<Index>(fisher.blocks.size()) == c.layers, "plan_gguf_budget: the Fisher information is of another model");
  scheme.tensor_types.clear();
  const std::uint64_t alignment = file.find("general.alignment") ? file.get_uint("general.alignment") : 32;
  auto padded = [&](std::uint64_t n) { return (n + alignment - 1) / alignment * alignment; };
  GgufBudgetPlan plan;
  plan.budget = budget;
  // which tensors are chosen: a dense block's linear layers, the LM head, the embedding
  std::vector<std::size_t> chosen_index;  // into file.tensors()
  for (std::size_t i = 0; i < file.tensors().size(); ++i) {
    const GgufTensor& t = file.tensors()[i];
    const GgufTensorSite site = gguf_tensor_site(t.name);
    const bool linear = site.block && site.linear && site.owner == GgufTensorSite::Owner::Block && t.dims.size() == 2;
    if (linear || t.name == "output.weight" || t.name == "token_embd.weight") chosen_index.push_back(i);
  }
  // the file's size with every chosen tensor at its smallest type counts the rest exactly
  std::vector<GgufTensorSensitivity>& items = plan.tensors;
  for (std::size_t i : chosen_index) {
    const GgufTensor& t = file.tensors()[i];
    GgufTensorSensitivity s;
    s.name = t.name;
    s.types = gguf_budget_candidates(t.cols(), allowed);
    detail::require(!s.types.empty(), t.name + ": rows of " + std::to_string(t.cols()) + " weights hold none of the allowed ggml types");
    for (ggml::Type type : s.types) s.bytes.push_back(padded(ggml::quantized_size(type, static_cast<std::size_t>(t.rows() * t.cols()))));
    scheme.tensor_types[t.name] = s.types.front();
    items.push_back(std::move(s));
  }
  std::uint64_t smallest = 0;
  for (const auto& s : items) smallest += *std::min_element(s.bytes.begin(), s.bytes.end());
  const std::uint64_t rest = gguf_file_size(file, scheme, c).total() - smallest;
  if (budget < rest + smallest)  // before the candidates' errors are computed
    throw Error("size budget of " + std::to_string(budget) + " bytes: the file takes at least " + std::to_string(rest + smallest) +
                " bytes (every linear layer, the LM head and the embedding at their smallest types)");
  // each candidate's estimated loss rise
  std::map<std::string, std::size_t> item_of;
  for (std::size_t k = 0; k < items.size(); ++k) item_of[items[k].name] = k;
  auto score = [&](GgufTensorSensitivity& s, const auto& rise) {
    for (ggml::Type type : s.types) s.loss_rise.push_back(rise(type));
  };
  for (Index b = 0; b < c.layers; ++b) {
    const LlamaBlock block = source.block(b);
    for (Linear l : all_linears) {
      const auto it = item_of.find(gguf_layer_name(b, l));
      if (it == item_of.end()) continue;
      const FisherFactors& f = fisher.of(b, l);
      score(items[it->second], [&](ggml::Type type) { return f.loss_rise(block[l], detail::ggml_round_trip(type, block[l])); });
    }
  }
  const bool tied = c.tied_embeddings;
  if (item_of.count("output.weight") || item_of.count("token_embd.weight")) {
    const RowMatrix embedding = source.embedding();
    if (const auto it = item_of.find("token_embd.weight"); it != item_of.end())
      score(items[it->second], [&](ggml::Type type) {
        const RowMatrix q = detail::ggml_round_trip(type, embedding);
        return fisher.embedding_loss_rise(embedding, q) + (tied ? fisher.head.loss_rise(embedding, q) : 0.0);
      });
    if (const auto it = item_of.find("output.weight"); it != item_of.end()) {
      const RowMatrix output = source.output();
      score(items[it->second], [&](ggml::Type type) { return fisher.head.loss_rise(output, detail::ggml_round_trip(type, output)); });
    }
  }
  for (const auto& s : items)
    detail::require(s.loss_rise.size() == s.types.size(), s.name + ": a tensor of the file that the model source does not hold");
  std::vector<std::vector<BudgetOption>> options(items.size());
  for (std::size_t k = 0; k < items.size(); ++k)
    for (std::size_t j = 0; j < items[k].types.size(); ++j) options[k].push_back({items[k].bytes[j], items[k].loss_rise[j]});
  const std::vector<std::size_t> choice = allocate_budget(options, budget - rest);
  plan.file_bytes = rest;
  for (std::size_t k = 0; k < items.size(); ++k) {
    items[k].chosen = choice[k];
    plan.types[items[k].name] = items[k].types[choice[k]];
    plan.file_bytes += items[k].bytes[choice[k]];
    plan.loss_rise += items[k].loss_rise[choice[k]];
  }
  return plan;
}

/// A --gguf-budget value: bytes ("88201792", "84MiB", "88MB", "1.5GiB"), bits per weight over the
/// file's tensors ("3.2bpw": every tensor's weights, header aside, as llama.cpp counts BPW), or a
/// mix's name ("q2_k": the size llama-quantize's file of that type takes).
inline std::uint64_t parse_gguf_budget(const std::string& text, const GgufFile& file, const LlamaConfig& config) {
  std::size_t end = 0;
  double number = 0;
  const bool numeric = !text.empty() && (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.');
  if (!numeric) {
    return gguf_file_size(file, gguf_scheme(text), config).total();  // gguf_scheme throws naming the types
  }
  try {
    number = std::stod(text, &end);
  } catch (const std::exception&) {
    throw Error("--gguf-budget '" + text + "': expected bytes (88201792, 84MiB, 88MB), bits per weight (3.2bpw) or a type (q2_k)");
  }
  const std::string unit = text.substr(end);
  if (!(number > 0)) throw Error("--gguf-budget '" + text + "': must be positive");
  const std::map<std::string, double> units = {{"", 1.0},   {"B", 1.0},        {"KB", 1e3}, {"MB", 1e6},
                                               {"GB", 1e9}, {"KiB", 1024.0},   {"MiB", 1048576.0}, {"GiB", 1073741824.0}};
  if (const auto u = units.find(unit); u != units.end()) return static_cast<std::uint64_t>(number * u->second);
  if (unit == "bpw") {  // the header on top of the tensors' bits
    double weights = 0;
    for (const GgufTensor& t : file.tensors()) weights += static_cast<double>(t.element_count);
    return gguf_file_size(file, gguf_scheme("q8_0"), config).header + static_cast<std::uint64_t>(number * weights / 8.0);
  }
  throw Error("--gguf-budget '" + text + "': unknown unit '" + unit + "' (B, KB, MB, GB, KiB, MiB, GiB, bpw)");
}

}  // namespace autoround
