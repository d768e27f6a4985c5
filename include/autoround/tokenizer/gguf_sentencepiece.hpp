#pragma once
// A SentencePiece vocabulary stored in a GGUF file (tokenizer.ggml.model "llama": LLaMA 1/2,
// Mistral, Phi-3, TinyLlama) turned back into the model file Google's library loads: the
// serialized ModelProto (sentencepiece_model.proto) of a BPE model whose pieces are the GGUF's
// tokens, scores and token types. SentencePieceTokenizer (sentencepiece_tokenizer.hpp) then runs
// the library's own BPE on it, instead of a copy of that algorithm here. Reading the GGUF and
// writing the proto need neither libsentencepiece nor protobuf: the wire format of the few fields
// used is written by hand below.
//
// What the GGUF does not store is set as LLaMA's tokenizer.model has it: identity normalization,
// no removal of extra whitespace, spaces escaped as U+2581; byte fallback when the vocabulary has
// byte tokens (<0x00>..<0xFF>).
#include <bit>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../format/gguf_reader.hpp"
#include "bpe_vocabulary.hpp"

namespace autoround {

/// What SentencePieceTokenizer needs beyond the library's model: which id starts a text and the
/// control tokens a text may name when the user asks (parse_special).
struct SentencePieceModel {
  std::string name;                                               ///< for messages: the GGUF's path
  std::string serialized;                                         ///< sentencepiece ModelProto bytes
  std::int32_t bos = -1;                                          ///< prepended to every text when add_bos
  bool add_bos = false;
  std::vector<std::pair<std::string, std::int32_t>> control_tokens;  ///< text and id
};

namespace detail {
// Protocol-buffer wire format: a key is (field << 3 | wire type); 0 varint, 2 length-delimited,
// 5 fixed 32 bits (little-endian).
inline void proto_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline void proto_key(std::string& out, unsigned field, unsigned wire) { proto_varint(out, field << 3 | wire); }
inline void proto_int(std::string& out, unsigned field, std::int64_t v) {  // int32/enum/bool; negatives as 10 bytes
  proto_key(out, field, 0);
  proto_varint(out, static_cast<std::uint64_t>(v));
}
inline void proto_bytes(std::string& out, unsigned field, std::string_view bytes) {
  proto_key(out, field, 2);
  proto_varint(out, bytes.size());
  out.append(bytes);
}
inline void proto_float(std::string& out, unsigned field, float f) {
  proto_key(out, field, 5);
  const auto bits = std::bit_cast<std::uint32_t>(f);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(bits >> (8 * i) & 0xFF));
}
}  // namespace detail

inline SentencePieceModel sentencepiece_model_from_gguf(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  if (model != "llama") throw Error(path + ": tokenizer.ggml.model is '" + model + "', not SentencePiece ('llama')");
  auto array = [&](const char* key) -> const std::vector<GgufValue>& {
    const GgufValue* value = gguf.find(key);
    if (!value) throw Error(path + ": " + key + " is missing");
    if (value->kind != GgufValue::Kind::Array) throw Error(path + ": " + key + " is not an array");
    return value->array;
  };
  const auto& tokens = array("tokenizer.ggml.tokens");
  const auto& scores = array("tokenizer.ggml.scores");
  const auto& types = array("tokenizer.ggml.token_type");
  if (scores.size() != tokens.size() || types.size() != tokens.size())
    throw Error(path + ": tokenizer.ggml.scores and token_type must have one entry per token (" + std::to_string(tokens.size()) +
                " tokens)");
  auto id_key = [&](const char* key, std::int64_t fallback) -> std::int64_t {
    if (!gguf.find(key)) return fallback;
    const std::int64_t id = static_cast<std::int64_t>(gguf.get_uint(key));
    if (id < 0 || id >= static_cast<std::int64_t>(tokens.size()))
      throw Error(path + ": " + key + " " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(tokens.size()) + ")");
    return id;
  };
  const std::int64_t unk = id_key("tokenizer.ggml.unknown_token_id", 0);

  SentencePieceModel m;
  m.name = path;
  m.bos = static_cast<std::int32_t>(id_key("tokenizer.ggml.bos_token_id", -1));
  m.add_bos = m.bos >= 0;
  if (const GgufValue* add = gguf.find("tokenizer.ggml.add_bos_token")) m.add_bos = m.add_bos && add->b;
  bool add_space_prefix = true;
  if (const GgufValue* add = gguf.find("tokenizer.ggml.add_space_prefix")) add_space_prefix = add->b;

  // sentencepiece's piece types are llama.cpp's token types (1 normal ... 6 byte). The library
  // wants exactly one unknown piece, the one tokenizer.ggml.unknown_token_id names; other pieces
  // typed unknown (Phi-3's [PAD...] fillers) and undefined ones become control pieces, which text
  // never produces.
  std::string& out = m.serialized;
  bool has_bytes = false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].kind != GgufValue::Kind::String) throw Error(path + ": tokenizer.ggml.tokens holds a non-string at " + std::to_string(i));
    if (tokens[i].s.empty()) throw Error(path + ": token " + std::to_string(i) + " is empty");
    if (scores[i].kind != GgufValue::Kind::Float) throw Error(path + ": tokenizer.ggml.scores holds a non-float at " + std::to_string(i));
    auto type = static_cast<TokenType>(types[i].kind == GgufValue::Kind::Signed ? types[i].i : static_cast<std::int64_t>(types[i].u));
    if (static_cast<std::int64_t>(i) == unk) type = TokenType::Unknown;
    else if (type == TokenType::Unknown || type == TokenType::Undefined || static_cast<int>(type) > 6) type = TokenType::Control;
    if (type == TokenType::Byte) has_bytes = true;
    if (type == TokenType::Control) m.control_tokens.emplace_back(tokens[i].s, static_cast<std::int32_t>(i));
    std::string piece;
    detail::proto_bytes(piece, 1, tokens[i].s);
    detail::proto_float(piece, 2, static_cast<float>(scores[i].f));
    detail::proto_int(piece, 3, static_cast<int>(type));
    detail::proto_bytes(out, 1, piece);  // ModelProto.pieces
  }
  std::string trainer;
  detail::proto_int(trainer, 3, 2);  // model_type = BPE
  detail::proto_int(trainer, 4, static_cast<std::int64_t>(tokens.size()));  // vocab_size
  detail::proto_int(trainer, 35, has_bytes ? 1 : 0);                        // byte_fallback
  detail::proto_int(trainer, 40, unk);                                      // unk_id
  detail::proto_bytes(out, 2, trainer);
  std::string normalizer;
  detail::proto_bytes(normalizer, 1, "identity");
  detail::proto_int(normalizer, 3, add_space_prefix ? 1 : 0);  // add_dummy_prefix
  detail::proto_int(normalizer, 4, 0);                         // remove_extra_whitespaces
  detail::proto_int(normalizer, 5, 1);                         // escape_whitespaces
  detail::proto_bytes(out, 3, normalizer);
  return m;
}

}  // namespace autoround
