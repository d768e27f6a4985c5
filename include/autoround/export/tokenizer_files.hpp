#pragma once
// Hugging Face tokenizer files rebuilt from a GGUF file's tokenizer.ggml.* metadata, so that a
// checkpoint exported from a GGUF model is complete (transformers and vLLM load tokenizer.json).
// Supported: byte-level BPE ("gpt2" model) with every pre-tokenizer pre_tokenizer_patterns knows
// (GPT-2, Llama 3, Qwen2/3.5, SmolLM/StarCoder, Falcon, DeepSeek LLM/Coder, ...), written as
// Split(Regex, Isolated) steps before ByteLevel, Llama 3's ignore_merges and BOS template. CI
// checks that transformers loads it and tokenizes as ByteLevelBpe does (scripts/check_exports.py,
// tests/test_bpe_tokenizer.cpp).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../format/gguf_reader.hpp"
#include "../tokenizer/gguf_vocabulary.hpp"
#include "../tokenizer/pre_tokenizer_patterns.hpp"

namespace autoround {

struct TokenizerFiles {
  nlohmann::ordered_json tokenizer;         ///< tokenizer.json
  nlohmann::ordered_json tokenizer_config;  ///< tokenizer_config.json
  nlohmann::ordered_json generation_config; ///< generation_config.json
};

inline TokenizerFiles tokenizer_files_from_gguf(const GgufFile& gguf) {
  const BpeVocabulary v = bpe_vocabulary_from_gguf(gguf);  // BPE only: throws naming the file otherwise
  if (!v.byte_level)
    throw Error(gguf.path() + ": writing a tokenizer.json for Gemma 4's vocabulary (tokenizer.ggml.model 'gemma4') is not supported");
  const std::vector<std::string> patterns = pre_tokenizer_patterns(v.pre);
  const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object(), merge_list = nlohmann::ordered_json::array();
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  // ordered_json finds a key by linear search: filling 150k tokens with operator[] took minutes.
  // Append to its underlying vector instead, a later duplicate overwriting the value as [] would.
  auto& entries = static_cast<std::vector<std::pair<const std::string, nlohmann::ordered_json>>&>(
      vocab.get_ref<nlohmann::ordered_json::object_t&>());
  entries.reserve(v.tokens.size());
  std::unordered_map<std::string_view, std::size_t> at;
  for (std::size_t id = 0; id < v.tokens.size(); ++id) {
    if (const auto it = at.find(v.tokens[id]); it != at.end()) {
      entries[it->second].second = id;
    } else {
      at.emplace(v.tokens[id], entries.size());
      entries.emplace_back(v.tokens[id], id);
    }
    const TokenType type = v.types.empty() ? TokenType::Normal : v.types[id];
    if (type == TokenType::Control || type == TokenType::UserDefined)
      added.push_back({{"id", id}, {"content", v.tokens[id]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", type == TokenType::Control}});
  }
  for (const std::string& m : v.merges) merge_list.push_back(m);

  // the family's regexes as Splits (isolated), then the byte mapping without a regex of its own
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  for (const std::string& p : patterns)
    steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", p}}}, {"behavior", "Isolated"}, {"invert", false}});
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  nlohmann::ordered_json post = nullptr;
  if (v.add_bos && v.bos) {  // BOS first, as the model's own tokenizer does (Llama 3's TemplateProcessing)
    const std::string bos = v.tokens[static_cast<std::size_t>(*v.bos)];
    post = {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {*v.bos}}, {"tokens", {bos}}}}}}};
  }
  TokenizerFiles f;
  f.tokenizer = {{"version", "1.0"},       {"truncation", nullptr}, {"padding", nullptr},
                 {"added_tokens", added},  {"normalizer", nullptr}, {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", steps}}},
                 {"post_processor", post},
                 {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
                 {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                            {"ignore_merges", v.ignore_merges}, {"vocab", vocab}, {"merges", merge_list}}}};

  const auto token_of = [&](const char* key) -> nlohmann::ordered_json {
    if (!gguf.find(key)) return nullptr;
    const auto id = gguf.get_uint(key);
    return id < tokens->array.size() ? nlohmann::ordered_json(tokens->array[id].s) : nlohmann::ordered_json(nullptr);
  };
  f.tokenizer_config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                        {"bos_token", token_of("tokenizer.ggml.bos_token_id")},
                        {"eos_token", token_of("tokenizer.ggml.eos_token_id")},
                        {"unk_token", token_of("tokenizer.ggml.unknown_token_id")},
                        {"pad_token", token_of("tokenizer.ggml.padding_token_id")},
                        {"add_bos_token", v.add_bos},
                        {"clean_up_tokenization_spaces", false}};
  if (gguf.find("tokenizer.chat_template")) f.tokenizer_config["chat_template"] = gguf.get_string("tokenizer.chat_template");
  f.generation_config = {{"_from_model_config", true}};
  if (gguf.find("tokenizer.ggml.bos_token_id")) f.generation_config["bos_token_id"] = gguf.get_uint("tokenizer.ggml.bos_token_id");
  if (gguf.find("tokenizer.ggml.eos_token_id")) f.generation_config["eos_token_id"] = gguf.get_uint("tokenizer.ggml.eos_token_id");
  return f;
}

}  // namespace autoround
