#pragma once
// What a byte-level BPE tokenizer is made of (read from GGUF: gguf_vocabulary.hpp; from
// tokenizer.json: hf_tokenizer_json.hpp; run by ByteLevelBpe). Plain data: no regex engine.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace autoround {

/// GGUF's token types (tokenizer.ggml.token_type).
enum class TokenType : std::int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

/// What a byte-level BPE tokenizer is made of, as GGUF (tokenizer.ggml.*) or tokenizer.json store it.
struct BpeVocabulary {
  std::vector<std::string> tokens;      ///< id -> token (in the byte alphabet; added tokens as their text)
  std::vector<TokenType> types;         ///< one per token; empty: all Normal
  std::vector<std::string> merges;      ///< "left right", rank = position
  std::string pre = "default";          ///< pre-tokenizer name (pre_tokenizer_patterns), unless:
  std::vector<std::string> pre_patterns;  ///< the pre-tokenizer's regexes as tokenizer.json gives them
  std::optional<std::int32_t> bos, eos;
  bool add_bos = false;                 ///< encode(..., add_special) puts bos first
  bool ignore_merges = false;           ///< a word that is a token is taken whole (Llama 3)
  /// false: the symbols are the text's UTF-8 characters, spaces written U+2581 and a character no
  /// token holds written as byte tokens <0xXX> (Gemma 4: SentencePiece-style BPE); true: GPT-2's
  /// byte alphabet.
  bool byte_level = true;
  std::string name = "vocabulary";      ///< for error messages (the file it came from)
};

}  // namespace autoround
