#pragma once
// A BPE vocabulary read from a GGUF file's tokenizer.ggml.* metadata: byte-level (model "gpt2")
// or Gemma 4's SentencePiece-style one (model "gemma4"): tokens, token_type, merges, pre,
// bos/eos ids, add_bos_token. Run it with ByteLevelBpe
// (byte_level_bpe.hpp, which needs PCRE2); reading it does not.
#include <string>

#include "../format/gguf_reader.hpp"
#include "bpe_vocabulary.hpp"
#include "pre_tokenizer_patterns.hpp"

namespace autoround {

inline BpeVocabulary bpe_vocabulary_from_gguf(const GgufFile& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  if (model != "gpt2" && model != "gemma4")
    throw Error(gguf.path() + ": tokenizer.ggml.model is '" + model + "', not byte-level BPE ('gpt2') or Gemma 4's ('gemma4')");
  BpeVocabulary v;
  v.name = gguf.path();
  v.byte_level = model == "gpt2";
  auto strings = [&](const char* key, bool required) {
    std::vector<std::string> out;
    const GgufValue* value = gguf.find(key);
    if (!value) {
      if (required) throw Error(gguf.path() + ": " + key + " is missing");
      return out;
    }
    if (value->kind != GgufValue::Kind::Array) throw Error(gguf.path() + ": " + key + " is not an array");
    out.reserve(value->array.size());
    for (const GgufValue& s : value->array) {
      if (s.kind != GgufValue::Kind::String) throw Error(gguf.path() + ": " + key + " holds a non-string");
      out.push_back(s.s);
    }
    return out;
  };
  v.tokens = strings("tokenizer.ggml.tokens", true);
  v.merges = strings("tokenizer.ggml.merges", true);
  if (const GgufValue* types = gguf.find("tokenizer.ggml.token_type")) {
    if (types->kind != GgufValue::Kind::Array || types->array.size() != v.tokens.size())
      throw Error(gguf.path() + ": tokenizer.ggml.token_type must have one entry per token");
    for (const GgufValue& t : types->array)
      v.types.push_back(static_cast<TokenType>(t.kind == GgufValue::Kind::Signed ? t.i : static_cast<std::int64_t>(t.u)));
  }
  v.pre = gguf.find("tokenizer.ggml.pre") ? gguf.get_string("tokenizer.ggml.pre") : v.byte_level ? "default" : "gemma4";
  if (gguf.find("tokenizer.ggml.bos_token_id")) v.bos = static_cast<std::int32_t>(gguf.get_uint("tokenizer.ggml.bos_token_id"));
  if (gguf.find("tokenizer.ggml.eos_token_id")) v.eos = static_cast<std::int32_t>(gguf.get_uint("tokenizer.ggml.eos_token_id"));
  // Llama 3's tokenizer.json sets ignore_merges and its template puts BOS first; a GGUF may not
  // store either (llama.cpp keys both on the pre-tokenizer, as here); add_bos_token, when present, decides
  v.ignore_merges = pre_tokenizer_ignores_merges(v.pre);
  v.add_bos = v.ignore_merges;
  if (const GgufValue* add = gguf.find("tokenizer.ggml.add_bos_token")) v.add_bos = add->b;
  return v;
}

}  // namespace autoround
