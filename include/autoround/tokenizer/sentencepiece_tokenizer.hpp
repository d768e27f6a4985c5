#pragma once
// A model's own SentencePiece tokenizer through Google's library, Debian's libsentencepiece-dev:
// from a tokenizer.model file (LLaMA 1/2, Mistral, TinyLlama, ...) or from the vocabulary a GGUF
// file stores (gguf_sentencepiece.hpp). Optional: include this header only in programs that link
// libsentencepiece (CMake: autoround::sentencepiece, defined where the library is found); the
// rest of autoround-cpp does not need it.
//
// A text is encoded as one string, with the beginning-of-sequence id first when the model has
// one (what a Hugging Face LLaMA tokenizer gives for tokenizer(text), which is how the reference
// tokenizes its calibration samples). With parse_special, control tokens written in the text
// ("<|user|>") are those tokens and the pieces between them are encoded one by one, each with
// its own space prefix, as llama.cpp does.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <utility>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "gguf_sentencepiece.hpp"

namespace autoround {

class SentencePieceTokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& model_path) : path_(model_path) {
    const auto status = processor_.Load(model_path);
    if (!status.ok()) throw Error(model_path + ": not a SentencePiece model (" + status.ToString() + ")");
    bos_ = processor_.bos_id();
  }

  /// A vocabulary read from a GGUF file (sentencepiece_model_from_gguf); BOS as the file says.
  explicit SentencePieceTokenizer(const SentencePieceModel& model, bool parse_special = false) : path_(model.name) {
    const auto status = processor_.LoadFromSerializedProto(model.serialized);
    if (!status.ok()) throw Error(model.name + ": its SentencePiece vocabulary does not load (" + status.ToString() + ")");
    bos_ = model.add_bos ? model.bos : -1;
    if (parse_special) {
      specials_ = model.control_tokens;  // longest first, so "<|end|>" is not read as a shorter token
      std::stable_sort(specials_.begin(), specials_.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
      for (const auto& t : specials_) starts_special_[static_cast<unsigned char>(t.first[0])] = true;
    }
  }

  int vocab_size() const { return processor_.GetPieceSize(); }
  int bos_id() const { return bos_; }  ///< the id put first; -1 when none
  int eos_id() const { return processor_.eos_id(); }

  std::vector<std::int32_t> encode(std::string_view text, bool add_bos = true) const {
    std::vector<std::int32_t> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    std::size_t start = 0;  // of the plain text not yet encoded
    for (std::size_t pos = 0; pos < text.size() && !specials_.empty(); ++pos) {
      if (!starts_special_[static_cast<unsigned char>(text[pos])]) continue;
      const auto hit = std::find_if(specials_.begin(), specials_.end(), [&](const auto& t) { return text.substr(pos).starts_with(t.first); });
      if (hit == specials_.end()) continue;
      encode_plain(text.substr(start, pos - start), out);
      out.push_back(hit->second);
      pos += hit->first.size() - 1;
      start = pos + 1;
    }
    encode_plain(text.substr(std::min(start, text.size())), out);
    return out;
  }

  std::string decode(const std::vector<std::int32_t>& ids) const {
    std::vector<int> pieces;
    for (std::int32_t id : ids) {
      if (id < 0 || id >= vocab_size())
        throw Error(path_ + ": token id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(vocab_size()) + ")");
      pieces.push_back(id);
    }
    std::string text;
    const auto status = processor_.Decode(pieces, &text);
    if (!status.ok()) throw Error(path_ + ": cannot decode (" + status.ToString() + ")");
    return text;
  }

 private:
  void encode_plain(std::string_view text, std::vector<std::int32_t>& out) const {
    if (text.empty()) return;
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) throw Error(path_ + ": cannot encode text (" + status.ToString() + ")");
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
  int bos_ = -1;
  std::vector<std::pair<std::string, std::int32_t>> specials_;  // matched in text only with parse_special
  std::array<bool, 256> starts_special_{};                        // first bytes of specials_
};

/// Read a UTF-8 text file and encode it whole with `tokenizer` (BOS first).
inline std::vector<std::int32_t> tokenize_text_file(const std::string& path, const SentencePieceTokenizer& tokenizer) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open text file");
  std::ostringstream text;
  text << in.rdbuf();
  const std::vector<std::int32_t> ids = tokenizer.encode(text.str());
  if (ids.size() <= 1) throw Error(path + ": no text to tokenize");
  return ids;
}

}  // namespace autoround
