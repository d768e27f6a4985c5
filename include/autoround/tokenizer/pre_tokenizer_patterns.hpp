#pragma once
// The pre-tokenizers of byte-level BPE tokenizers as data: the regular expressions of each model
// family's tokenizer.json, by the name GGUF files give them in tokenizer.ggml.pre (the names
// llama.cpp uses). Split-then-split semantics in pre_tokenizer.hpp. No regex engine needed here
// (the GGUF -> tokenizer.json exporter uses these too).
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"

namespace autoround {

namespace pre_patterns {
// GPT-2's ByteLevel regex (also MPT, OLMo, ...).
inline constexpr const char* gpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama 3: case-insensitive contractions, numbers in groups of up to three.
inline constexpr const char* llama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: as Llama 3 with single digits.
inline constexpr const char* qwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen3.5: letters joined by combining marks.
inline constexpr const char* qwen35 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}  // namespace pre_patterns

/// The regexes of the pre-tokenizer GGUF's tokenizer.ggml.pre names (`name`), in order; throws
/// naming it when it is not one of ours.
inline std::vector<std::string> pre_tokenizer_patterns(std::string_view name) {
  using namespace pre_patterns;
  if (name == "gpt-2" || name == "gpt2" || name == "mpt" || name == "olmo" || name == "gpt-neox" || name == "default") return std::vector<std::string>({gpt2});
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return std::vector<std::string>({llama3});
  if (name == "qwen2" || name == "stablelm2") return std::vector<std::string>({qwen2});
  if (name == "qwen35") return std::vector<std::string>({qwen35});
  // Digits(individual_digits) before the GPT-2 regex
  if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r") return std::vector<std::string>({R"(\p{N})", gpt2});
  if (name == "falcon") return std::vector<std::string>({R"([\p{P}\$\+<=>\^~\|`]+)", gpt2, "[0-9][0-9][0-9]"});
  // (code points written as \x{...}: a source file's Unicode normalization must not change them;
  // NFC had turned U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A into other characters)
  if (name == "deepseek-llm")
    return std::vector<std::string>({R"([\r\n])",
                         R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)",
                         R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)", R"(\s+$)", R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N}+)"});
  if (name == "deepseek-coder")
    return std::vector<std::string>({R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N})"});
  // Gemma 4 (not byte-level: BpeVocabulary::byte_level false): lines and runs of newlines
  if (name == "gemma4") return std::vector<std::string>({R"([^\n]+|[\n]+)"});
  throw Error("pre-tokenizer '" + std::string(name) +
              "' is not supported (gpt-2, mpt, olmo, gpt-neox, llama-bpe, qwen2, qwen35, smollm, starcoder, refact, command-r, falcon, "
              "deepseek-llm, deepseek-coder, gemma4)");
}

/// Whether a pre-tokenizer family takes a word that is itself a token whole (Llama 3's
/// tokenizer.json "ignore_merges"; GGUF does not store it).
inline bool pre_tokenizer_ignores_merges(std::string_view name) { return name == "llama-bpe" || name == "llama3" || name == "llama-v3"; }

}  // namespace autoround
