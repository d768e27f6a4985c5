#pragma once
// Hugging Face tokenizer files rebuilt from a GGUF file's tokenizer.ggml.* metadata, so that a
// checkpoint exported from a GGUF model is complete (transformers and vLLM load tokenizer.json).
// Supported: byte-level BPE ("gpt2" model) with the GPT-2 pre-tokenizer, optionally preceded by
// single-digit splitting (llama.cpp pre-tokenizer "smollm"); the same construction as
// scripts/tokenize_gguf.py, which CI uses to check that both tokenize the evaluation text alike.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "../core/error.hpp"
#include "../format/gguf_reader.hpp"

namespace autoround {

struct TokenizerFiles {
  nlohmann::ordered_json tokenizer;         ///< tokenizer.json
  nlohmann::ordered_json tokenizer_config;  ///< tokenizer_config.json
  nlohmann::ordered_json generation_config; ///< generation_config.json
};

inline TokenizerFiles tokenizer_files_from_gguf(const GgufFile& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  const std::string pre = gguf.find("tokenizer.ggml.pre") ? gguf.get_string("tokenizer.ggml.pre") : "default";
  if (model != "gpt2" || (pre != "smollm" && pre != "gpt2" && pre != "default"))
    throw Error(gguf.path() + ": tokenizer '" + model + "' / pre-tokenizer '" + pre +
                "' cannot be rebuilt as tokenizer.json (byte-level BPE gpt2/smollm only)");
  const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
  const GgufValue* merges = gguf.find("tokenizer.ggml.merges");
  const GgufValue* types = gguf.find("tokenizer.ggml.token_type");
  if (!tokens || !merges) throw Error(gguf.path() + ": tokenizer.ggml.tokens / merges are missing");

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object(), merge_list = nlohmann::ordered_json::array();
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (std::size_t id = 0; id < tokens->array.size(); ++id) {
    const std::string& text = tokens->array[id].s;
    vocab[text] = id;
    const bool special = types && id < types->array.size() &&
                         (types->array[id].i == 3 || types->array[id].i == 4 || types->array[id].u == 3 || types->array[id].u == 4);
    if (special)
      added.push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", true}});
  }
  for (const GgufValue& m : merges->array) merge_list.push_back(m.s);

  nlohmann::ordered_json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::ordered_json pre_tokenizer = byte_level;
  if (pre == "smollm")
    pre_tokenizer = {{"type", "Sequence"},
                     {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  TokenizerFiles f;
  f.tokenizer = {{"version", "1.0"},       {"truncation", nullptr}, {"padding", nullptr},
                 {"added_tokens", added},  {"normalizer", nullptr}, {"pre_tokenizer", pre_tokenizer},
                 {"post_processor", nullptr},
                 {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
                 {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                            {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}}}};

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
                        {"add_bos_token", gguf.find("tokenizer.ggml.add_bos_token") && gguf.find("tokenizer.ggml.add_bos_token")->b},
                        {"clean_up_tokenization_spaces", false}};
  if (gguf.find("tokenizer.chat_template")) f.tokenizer_config["chat_template"] = gguf.get_string("tokenizer.chat_template");
  f.generation_config = {{"_from_model_config", true}};
  if (gguf.find("tokenizer.ggml.bos_token_id")) f.generation_config["bos_token_id"] = gguf.get_uint("tokenizer.ggml.bos_token_id");
  if (gguf.find("tokenizer.ggml.eos_token_id")) f.generation_config["eos_token_id"] = gguf.get_uint("tokenizer.ggml.eos_token_id");
  return f;
}

}  // namespace autoround
