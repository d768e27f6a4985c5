#pragma once
// What calibration and evaluation need of a tokenizer: text in, the model's token ids out.
// Two implementations: ByteLevelBpe (byte_level_bpe.hpp: Llama 3, Qwen2/3, SmolLM, DeepSeek,
// Falcon, GPT-2 families; needs PCRE2) and SentencePieceTokenizer
// (tokenizer/sentencepiece_tokenizer.hpp: LLaMA 1/2, Mistral; needs libsentencepiece).
// AnyTokenizer holds either; tokenizer_for_model (model_tokenizer.hpp) picks the model's own.
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace autoround {

template <class T>
concept Tokenizer = requires(const T& t, std::string_view text) {
  { t.encode(text) } -> std::same_as<std::vector<std::int32_t>>;  ///< BOS first when the model asks for one
  { t.vocab_size() } -> std::convertible_to<std::size_t>;
};

/// Any Tokenizer, type-erased (shared: copies use one tokenizer; not for concurrent use).
class AnyTokenizer {
 public:
  template <Tokenizer T>
  explicit AnyTokenizer(std::shared_ptr<const T> t, std::string kind)
      : encode_([t](std::string_view text) { return t->encode(text); }), vocab_size_(static_cast<std::size_t>(t->vocab_size())),
        kind_(std::move(kind)) {}

  std::vector<std::int32_t> encode(std::string_view text) const { return encode_(text); }
  std::size_t vocab_size() const { return vocab_size_; }
  /// "byte-level BPE (tokenizer.json)", "SentencePiece (tokenizer.model)", ... for messages
  const std::string& kind() const { return kind_; }

 private:
  std::function<std::vector<std::int32_t>(std::string_view)> encode_;
  std::size_t vocab_size_ = 0;
  std::string kind_;
};

}  // namespace autoround
