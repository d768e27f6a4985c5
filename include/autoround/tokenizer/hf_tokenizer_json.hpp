#pragma once
// A byte-level BPE vocabulary read from a Hugging Face tokenizer.json (and tokenizer_config.json
// beside it): model.vocab / merges / ignore_merges, added_tokens (special: control tokens, else
// user-defined), the pre-tokenizer (Sequence of Split(Regex, "Isolated"), Digits, ByteLevel)
// turned into the regexes PreTokenizer runs, and BOS from the post-processor's template (Llama
// 3) or tokenizer_config.json's add_bos_token. Anything else is refused, naming the file and the
// field: a tokenizer we cannot run exactly is an error, not a guess.
// Approximation: a "NFC" normalizer (Qwen2) is accepted and not applied: text already in NFC
// (most text) tokenizes exactly.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "bpe_vocabulary.hpp"
#include "pre_tokenizer_patterns.hpp"

namespace autoround {

namespace detail {

inline std::string regex_quote(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

inline void add_pre_tokenizer(const nlohmann::json& p, std::vector<std::string>& patterns, const std::string& where) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const auto& q : p.at("pretokenizers")) add_pre_tokenizer(q, patterns, where);
  } else if (type == "Split") {
    require(p.value("behavior", "") == "Isolated" && !p.value("invert", false),
            where + ": pre_tokenizer Split with behavior '" + p.value("behavior", "") + "' is not supported (Isolated)");
    const auto& pattern = p.at("pattern");
    if (pattern.contains("Regex")) patterns.push_back(pattern.at("Regex").get<std::string>());
    else patterns.push_back(regex_quote(pattern.at("String").get<std::string>()));
  } else if (type == "Digits") {
    patterns.push_back(p.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "ByteLevel") {
    require(!p.value("add_prefix_space", false), where + ": pre_tokenizer ByteLevel with add_prefix_space is not supported");
    if (p.value("use_regex", true)) patterns.push_back(pre_patterns::gpt2);
  } else {
    throw Error(where + ": pre_tokenizer type '" + type + "' is not supported (Sequence, Split, Digits, ByteLevel)");
  }
}

}  // namespace detail

/// `path`: a tokenizer.json, or the directory holding it (and maybe tokenizer_config.json).
inline BpeVocabulary bpe_vocabulary_from_tokenizer_json(const std::filesystem::path& path) {
  const std::filesystem::path file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  const std::string where = file.string();
  std::ifstream in(file);
  if (!in) throw Error(where + ": cannot open");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
  try {
    const auto& model = j.at("model");
    detail::require(model.value("type", "") == "BPE", where + ": model type '" + model.value("type", "") + "' is not BPE");
    detail::require(!model.value("byte_fallback", false), where + ": a byte_fallback BPE (SentencePiece-style) is not byte-level BPE");
    const std::string normalizer = j.contains("normalizer") && !j["normalizer"].is_null() ? j["normalizer"].value("type", "") : "";
    detail::require(normalizer.empty() || normalizer == "NFC", where + ": normalizer '" + normalizer + "' is not supported");
    BpeVocabulary v;
    v.name = where;
    const auto& vocab = model.at("vocab");
    std::size_t size = 0;
    for (const auto& [token, id] : vocab.items()) size = std::max(size, id.get<std::size_t>() + 1);
    for (const auto& t : j.value("added_tokens", nlohmann::json::array())) size = std::max(size, t.at("id").get<std::size_t>() + 1);
    v.tokens.assign(size, "");
    v.types.assign(size, TokenType::Unused);
    for (const auto& [token, id] : vocab.items()) {
      v.tokens[id.get<std::size_t>()] = token;
      v.types[id.get<std::size_t>()] = TokenType::Normal;
    }
    for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
      const auto id = t.at("id").get<std::size_t>();
      v.tokens[id] = t.at("content").get<std::string>();
      v.types[id] = t.value("special", false) ? TokenType::Control : TokenType::UserDefined;
    }
    for (const auto& m : model.at("merges")) {
      if (m.is_string()) v.merges.push_back(m.get<std::string>());
      else v.merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());  // the newer [left, right] form
    }
    v.ignore_merges = model.value("ignore_merges", false);
    detail::add_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), v.pre_patterns, where);
    detail::require(!v.pre_patterns.empty(), where + ": no pre-tokenizer (byte-level BPE needs one)");
    v.pre = "tokenizer.json";
    auto id_of = [&](const std::string& content) -> std::optional<std::int32_t> {
      for (std::size_t i = 0; i < v.tokens.size(); ++i)
        if (v.tokens[i] == content) return static_cast<std::int32_t>(i);
      return std::nullopt;
    };
    // BOS: a post-processor template that starts with a special token (Llama 3), else tokenizer_config.json
    const auto& post = j.contains("post_processor") ? j["post_processor"] : nlohmann::json();
    auto template_bos = [&](const nlohmann::json& p) -> std::optional<std::int32_t> {
      if (!p.is_object() || p.value("type", "") != "TemplateProcessing" || !p.contains("single") || p["single"].empty()) return std::nullopt;
      const auto& first = p["single"][0];
      if (!first.contains("SpecialToken")) return std::nullopt;
      return id_of(first["SpecialToken"].at("id").get<std::string>());
    };
    if (post.is_object() && post.value("type", "") == "Sequence") {
      for (const auto& p : post.at("processors"))
        if (const auto bos = template_bos(p)) v.bos = bos;
    } else if (const auto bos = template_bos(post)) {
      v.bos = bos;
    }
    v.add_bos = v.bos.has_value();
    const std::filesystem::path config_path = file.parent_path() / "tokenizer_config.json";
    if (std::ifstream cin(config_path); cin) {
      const nlohmann::json c = nlohmann::json::parse(cin, nullptr, false);
      auto content = [](const nlohmann::json& t) { return t.is_string() ? t.get<std::string>() : t.is_object() ? t.value("content", "") : ""; };
      if (c.is_object()) {
        if (c.contains("bos_token") && !c["bos_token"].is_null() && !v.bos) v.bos = id_of(content(c["bos_token"]));
        if (c.contains("eos_token") && !c["eos_token"].is_null()) v.eos = id_of(content(c["eos_token"]));
        if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) v.add_bos = c["add_bos_token"].get<bool>() && v.bos.has_value();
      }
    }
    return v;
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": " + e.what());
  }
}

}  // namespace autoround
