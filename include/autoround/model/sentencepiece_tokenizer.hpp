#pragma once
// A model's own SentencePiece tokenizer (tokenizer.model: LLaMA 1/2, Mistral, TinyLlama, ...)
// through Google's library, Debian's libsentencepiece-dev. Optional: include this header only
// in programs that link libsentencepiece (CMake: autoround::sentencepiece, defined where the
// library is found); the rest of autoround-cpp does not need it.
//
// A text is encoded as one string, with the beginning-of-sequence id first when the model has
// one (what a Hugging Face LLaMA tokenizer gives for tokenizer(text), which is how the reference
// tokenizes its calibration samples).
#include <sentencepiece_processor.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"

namespace autoround {

class SentencePieceTokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& model_path) : path_(model_path) {
    const auto status = processor_.Load(model_path);
    if (!status.ok()) throw Error(model_path + ": not a SentencePiece model (" + status.ToString() + ")");
  }

  int vocab_size() const { return processor_.GetPieceSize(); }
  int bos_id() const { return processor_.bos_id(); }  ///< -1 when the model has none
  int eos_id() const { return processor_.eos_id(); }

  std::vector<std::int32_t> encode(std::string_view text, bool add_bos = true) const {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) throw Error(path_ + ": cannot encode text (" + status.ToString() + ")");
    std::vector<std::int32_t> out;
    out.reserve(ids.size() + 1);
    if (add_bos && bos_id() >= 0) out.push_back(bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
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
  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
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
