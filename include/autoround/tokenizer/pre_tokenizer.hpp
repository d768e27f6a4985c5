#pragma once
// How a byte-level BPE tokenizer cuts text into words before merging: a sequence of regular
// expressions, each splitting every piece the previous ones left into its matches and the gaps
// between them, both kept (Hugging Face's Split with behavior "Isolated", and ByteLevel's
// use_regex). Named sets: pre_tokenizer_patterns.hpp.
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "pre_tokenizer_patterns.hpp"
#include "regex.hpp"

namespace autoround {

class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(const std::vector<std::string>& patterns) {
    for (const std::string& p : patterns) regexes_.emplace_back(p);
  }

  /// The pre-tokenizer GGUF's tokenizer.ggml.pre names (`name`), or throws naming it.
  static PreTokenizer named(std::string_view name) { return PreTokenizer(pre_tokenizer_patterns(name)); }

  /// The pieces of `text` (views into it), in order; together they are the whole text.
  std::vector<std::string_view> split(std::string_view text) const {
    std::vector<std::string_view> pieces{text}, next;
    if (text.empty()) return {};
    for (const Regex& regex : regexes_) {
      next.clear();
      for (std::string_view piece : pieces) {
        std::size_t at = 0;
        regex.for_each_match(piece, [&](std::size_t begin, std::size_t end) {
          if (begin > at) next.push_back(piece.substr(at, begin - at));
          next.push_back(piece.substr(begin, end - begin));
          at = end;
        });
        if (at < piece.size()) next.push_back(piece.substr(at));
      }
      pieces.swap(next);
    }
    return pieces;
  }

 private:
  std::vector<Regex> regexes_;
};

}  // namespace autoround
