#pragma once
// The model's own tokenizer, chosen from the model: a SentencePiece tokenizer.model when one is
// given, else what the model holds: a GGUF file's tokenizer.ggml.* (SentencePiece for "llama":
// LLaMA 1/2, Mistral, Phi-3; BPE for "gpt2" (byte-level) and "gemma4") or a Hugging Face directory's
// tokenizer.json (byte-level BPE). Needs PCRE2 (autoround::pcre2) for BPE and libsentencepiece
// (autoround::sentencepiece) for SPM; without one, that kind is refused with the package to install.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../format/gguf_reader.hpp"
#include "tokenizer.hpp"
#if defined(AUTOROUND_HAS_PCRE2)
#include "byte_level_bpe.hpp"
#include "gguf_vocabulary.hpp"
#include "hf_tokenizer_json.hpp"
#endif
#if defined(AUTOROUND_HAS_SENTENCEPIECE)
#include "sentencepiece_tokenizer.hpp"
#endif

namespace autoround {

#if defined(AUTOROUND_HAS_PCRE2)
namespace detail {
/// ByteLevelBpe as a Tokenizer that reads control tokens written in the text (parse_special).
struct SpecialTokensInText {
  std::shared_ptr<const ByteLevelBpe> bpe;
  std::vector<std::int32_t> encode(std::string_view text) const { return bpe->encode(text, true, true); }
  std::size_t vocab_size() const { return bpe->vocab_size(); }
};
}  // namespace detail
#endif

/// `model`: a GGUF file or a Hugging Face directory; `sentencepiece_model`: a tokenizer.model
/// (empty: none). `parse_special`: control tokens written in the text ("<|im_start|>") are those
/// tokens (byte-level BPE); otherwise they are plain text. Throws naming the model when it has
/// no tokenizer we can run.
inline AnyTokenizer tokenizer_for_model(const std::filesystem::path& model, const std::string& sentencepiece_model = "",
                                        bool parse_special = false) {
  if (!sentencepiece_model.empty()) {
#if defined(AUTOROUND_HAS_SENTENCEPIECE)
    return AnyTokenizer(std::make_shared<const SentencePieceTokenizer>(sentencepiece_model), "SentencePiece (" + sentencepiece_model + ")");
#else
    throw Error(sentencepiece_model + ": built without SentencePiece (install libsentencepiece-dev and rebuild)");
#endif
  }
  const bool directory = std::filesystem::is_directory(model);
  bool has_bpe = directory && std::filesystem::exists(model / "tokenizer.json");
  std::optional<GgufFile> gguf;
  if (!directory) {
    gguf.emplace(model.string());
    const std::string kind = gguf->find("tokenizer.ggml.model") ? gguf->get_string("tokenizer.ggml.model") : "";
    if (kind == "llama") {
#if defined(AUTOROUND_HAS_SENTENCEPIECE)
      return AnyTokenizer(std::make_shared<const SentencePieceTokenizer>(sentencepiece_model_from_gguf(*gguf), parse_special),
                          "SentencePiece (GGUF)");
#else
      throw Error(model.string() + ": its SentencePiece vocabulary needs libsentencepiece (install libsentencepiece-dev and rebuild)");
#endif
    }
    has_bpe = kind == "gpt2" || kind == "gemma4";
  }
  if (!has_bpe)
    throw Error(model.string() + ": no tokenizer to run (SentencePiece or byte-level BPE in the GGUF, the directory's "
                                 "tokenizer.json; or give a tokenizer.model)");
#if defined(AUTOROUND_HAS_PCRE2)
  auto bpe = std::make_shared<const ByteLevelBpe>(directory ? bpe_vocabulary_from_tokenizer_json(model) : bpe_vocabulary_from_gguf(*gguf));
  const std::string kind = directory ? "byte-level BPE (tokenizer.json)" : "byte-level BPE (GGUF)";
  if (parse_special) return AnyTokenizer(std::make_shared<const detail::SpecialTokensInText>(detail::SpecialTokensInText{bpe}), kind);
  return AnyTokenizer(bpe, kind);
#else
  throw Error(model.string() + ": its byte-level BPE tokenizer needs PCRE2 (install libpcre2-dev and rebuild)");
#endif
}

}  // namespace autoround
