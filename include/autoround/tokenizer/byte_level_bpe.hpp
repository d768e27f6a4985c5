#pragma once
// Byte-level BPE (GPT-2's scheme; Llama 3, Qwen2/3, Mistral-Nemo, SmolLM, DeepSeek, Falcon, MPT):
//   1. text is cut at the added tokens it contains (user-defined always, control tokens such as
//      <|begin_of_text|> only when asked: parse_special), and each remaining stretch into words
//      by the model's PreTokenizer;
//   2. each word's UTF-8 bytes become characters of GPT-2's byte alphabet (printable bytes stand
//      for themselves, the others for U+0100 onwards: bytes_to_unicode), one symbol each;
//   3. adjacent symbols are merged by rank, lowest first and leftmost among equals (Hugging
//      Face tokenizers' BPE), until no pair of the word has a merge; the symbols are the ids.
// With ignore_merges (Llama 3's tokenizer.json) a word that is itself a token is that token.
// Gemma 4's vocabulary (BpeVocabulary::byte_level false) is the same algorithm on other symbols:
// spaces become U+2581 and each UTF-8 character is a symbol; a character no token holds comes
// out as its bytes' <0xXX> tokens, and a run of newlines that is a token is taken whole.
// Results equal Hugging Face tokenizers' (tests/test_bpe_tokenizer.cpp: llama.cpp's vocabulary
// test files and long real texts). An object caches words it has seen: one per thread.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <functional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "../core/error.hpp"
#include "bpe_vocabulary.hpp"
#include "pre_tokenizer.hpp"

namespace autoround {

namespace detail {

/// GPT-2's bytes_to_unicode: byte -> code point of the character standing for it.
inline std::array<char32_t, 256> byte_alphabet() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

inline std::string utf8(char32_t c) {
  std::string s;
  if (c < 0x80) s += static_cast<char>(c);
  else if (c < 0x800) s += static_cast<char>(0xC0 | (c >> 6)), s += static_cast<char>(0x80 | (c & 0x3F));
  else if (c < 0x10000)
    s += static_cast<char>(0xE0 | (c >> 12)), s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)), s += static_cast<char>(0x80 | (c & 0x3F));
  else
    s += static_cast<char>(0xF0 | (c >> 18)), s += static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
        s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)), s += static_cast<char>(0x80 | (c & 0x3F));
  return s;
}

}  // namespace detail

class ByteLevelBpe {
 public:
  explicit ByteLevelBpe(BpeVocabulary v)
      : v_(std::move(v)), pre_(v_.pre_patterns.empty() ? PreTokenizer::named(v_.pre) : PreTokenizer(v_.pre_patterns)) {
    const std::string& name = v_.name;
    if (v_.types.empty()) v_.types.assign(v_.tokens.size(), TokenType::Normal);
    detail::require(v_.types.size() == v_.tokens.size(), name + ": " + std::to_string(v_.types.size()) + " token types for " +
                                                             std::to_string(v_.tokens.size()) + " tokens");
    ids_.reserve(v_.tokens.size());
    for (std::size_t i = 0; i < v_.tokens.size(); ++i) {
      const auto id = static_cast<std::int32_t>(i);
      ids_.emplace(v_.tokens[i], id);  // the first of duplicates wins, as in a vocab map
      const TokenType t = v_.types[i];
      if ((t == TokenType::Control || t == TokenType::UserDefined) && !v_.tokens[i].empty())
        added_[static_cast<unsigned char>(v_.tokens[i][0])].push_back(id);
    }
    // longest first: at one position the longest added token wins
    for (auto& list : added_)
      std::stable_sort(list.begin(), list.end(), [&](std::int32_t a, std::int32_t b) {
        return v_.tokens[static_cast<std::size_t>(a)].size() > v_.tokens[static_cast<std::size_t>(b)].size();
      });
    const auto alphabet = detail::byte_alphabet();
    for (int b = 0; b < 256 && !v_.byte_level; ++b) {  // byte fallback tokens <0x00>..<0xFF>
      static constexpr char hex[] = "0123456789ABCDEF";
      const auto it = ids_.find(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
      byte_token_[static_cast<std::size_t>(b)] = it == ids_.end() ? -1 : it->second;
      if (it != ids_.end()) byte_of_token_.emplace(it->second, static_cast<std::uint8_t>(b));
    }
    for (int b = 0; b < 256 && v_.byte_level; ++b) {
      const std::string ch = detail::utf8(alphabet[static_cast<std::size_t>(b)]);
      byte_char_[static_cast<std::size_t>(b)] = ch;
      const auto it = ids_.find(ch);
      byte_token_[static_cast<std::size_t>(b)] = it == ids_.end() ? -1 : it->second;
      char_byte_.emplace(ch, static_cast<std::uint8_t>(b));
    }
    merges_.reserve(v_.merges.size());
    for (std::size_t r = 0; r < v_.merges.size(); ++r) {
      const std::string& m = v_.merges[r];
      const auto space = m.find(' ', 1);  // a merge's left part may itself start with a space-like character
      detail::require(space != std::string::npos, name + ": merge " + std::to_string(r) + " '" + m + "' is not 'left right'");
      const auto left = ids_.find(m.substr(0, space)), right = ids_.find(m.substr(space + 1)), merged = ids_.find(m.substr(0, space) + m.substr(space + 1));
      if (left == ids_.end() || right == ids_.end() || merged == ids_.end()) continue;  // a merge into nothing never applies
      merges_.emplace(pair_key(left->second, right->second), Merge{static_cast<std::int32_t>(r), merged->second});
    }
  }

  std::size_t vocab_size() const { return v_.tokens.size(); }
  const BpeVocabulary& vocabulary() const { return v_; }

  /// Token ids of `text` (UTF-8). add_special: the vocabulary's BOS first when it asks for one
  /// (add_bos). parse_special: control tokens written in the text (e.g. "<|im_start|>") are
  /// those tokens; otherwise they are plain text.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = false) const {
    detail::require(valid_utf8(text), v_.name + ": the text to tokenize is not valid UTF-8");
    std::vector<std::int32_t> out;
    if (add_special && v_.add_bos && v_.bos) out.push_back(*v_.bos);
    std::size_t plain = 0, at = 0;
    while (at < text.size()) {
      const std::int32_t special = added_at(text, at, parse_special);
      if (special < 0) {
        ++at;
        continue;
      }
      encode_plain(text.substr(plain, at - plain), out);
      out.push_back(special);
      at += v_.tokens[static_cast<std::size_t>(special)].size();
      plain = at;
    }
    encode_plain(text.substr(plain), out);
    return out;
  }

  /// The text of `ids`: tokens mapped back from the byte alphabet; control tokens left out.
  std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    for (const std::int32_t id : ids) {
      detail::require(id >= 0 && static_cast<std::size_t>(id) < v_.tokens.size(), v_.name + ": token id " + std::to_string(id) + " out of range");
      const std::string& t = v_.tokens[static_cast<std::size_t>(id)];
      const TokenType type = v_.types[static_cast<std::size_t>(id)];
      if (type == TokenType::Control) continue;
      if (type == TokenType::UserDefined) {
        out += t;
        continue;
      }
      if (!v_.byte_level) {  // U+2581 back to spaces, <0xXX> back to its byte
        if (const auto byte = byte_of_token_.find(id); byte != byte_of_token_.end()) {
          out += static_cast<char>(byte->second);
          continue;
        }
        for (std::size_t i = 0; i < t.size();) {
          if (t.compare(i, 3, kSpaceMark) == 0) out += ' ', i += 3;
          else out += t[i++];
        }
        continue;
      }
      for (std::size_t i = 0; i < t.size();) {
        std::size_t n = 1;
        while (i + n < t.size() && (static_cast<unsigned char>(t[i + n]) & 0xC0) == 0x80) ++n;
        const auto it = char_byte_.find(t.substr(i, n));
        if (it != char_byte_.end()) out += static_cast<char>(it->second); else out += t.substr(i, n);
        i += n;
      }
    }
    return out;
  }

 private:
  struct Merge {
    std::int32_t rank, merged;
  };
  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  // The added token that starts at text[at], or -1.
  std::int32_t added_at(std::string_view text, std::size_t at, bool parse_special) const {
    for (const std::int32_t id : added_[static_cast<unsigned char>(text[at])]) {
      if (!parse_special && v_.types[static_cast<std::size_t>(id)] == TokenType::Control) continue;
      const std::string& t = v_.tokens[static_cast<std::size_t>(id)];
      if (text.compare(at, t.size(), t) == 0) return id;
    }
    return -1;
  }

  void encode_plain(std::string_view text, std::vector<std::int32_t>& out) const {
    if (text.empty()) return;
    std::string escaped;  // not byte-level: spaces written U+2581
    if (!v_.byte_level && text.find(' ') != std::string_view::npos) {
      for (const char c : text) escaped += c == ' ' ? std::string_view(kSpaceMark) : std::string_view(&c, 1);
      text = escaped;
    }
    for (const std::string_view word : pre_.split(text)) encode_word(word, out);
  }

  // Words repeat (" the", " and"): their ids are cached, up to kCacheWords words at a time.
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
    const std::string key(word);
    if (const auto hit = cache_.find(key); hit != cache_.end()) {
      out.insert(out.end(), hit->second.begin(), hit->second.end());
      return;
    }
    const std::size_t first = out.size();
    merge_word(word, out);
    if (cache_.size() >= kCacheWords) cache_.clear();
    cache_.emplace(key, std::vector<std::int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
  }

  void merge_word(std::string_view word, std::vector<std::int32_t>& out) const {
    if (v_.ignore_merges) {
      std::string mapped;
      for (const char c : word) mapped += byte_char_[static_cast<unsigned char>(c)];
      if (const auto it = ids_.find(mapped); it != ids_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    struct Symbol {
      std::int32_t id;  // kNoToken: a character no token holds (not byte-level), written as bytes
      int prev, next;
    };
    std::vector<Symbol> symbols;
    std::vector<std::string_view> characters;  // not byte-level: each symbol's text
    symbols.reserve(word.size());
    if (v_.byte_level) {
      for (std::size_t i = 0; i < word.size(); ++i) {
        const std::int32_t id = byte_token_[static_cast<unsigned char>(word[i])];
        detail::require(id >= 0, v_.name + ": no token for byte " + std::to_string(static_cast<unsigned char>(word[i])));
        symbols.push_back({id, static_cast<int>(i) - 1, i + 1 < word.size() ? static_cast<int>(i) + 1 : -1});
      }
    } else {
      if (word.find_first_not_of('\n') == std::string_view::npos)  // a run of newlines that is a token
        if (const auto it = ids_.find(std::string(word)); it != ids_.end()) {
          out.push_back(it->second);
          return;
        }
      for (std::size_t i = 0; i < word.size();) {
        std::size_t n = 1;
        while (i + n < word.size() && (static_cast<unsigned char>(word[i + n]) & 0xC0) == 0x80) ++n;
        characters.push_back(word.substr(i, n));
        const auto it = ids_.find(std::string(characters.back()));
        const int k = static_cast<int>(symbols.size());
        symbols.push_back({it == ids_.end() ? kNoToken : it->second, k - 1, i + n < word.size() ? k + 1 : -1});
        i += n;
      }
    }
    // (rank, left position): lowest rank first, leftmost among equal ranks
    using Candidate = std::tuple<std::int32_t, int, std::int32_t, std::int32_t>;  // rank, left, left id, right id
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto offer = [&](int left) {
      if (left < 0) return;
      const int right = symbols[static_cast<std::size_t>(left)].next;
      if (right < 0) return;
      const auto it = merges_.find(pair_key(symbols[static_cast<std::size_t>(left)].id, symbols[static_cast<std::size_t>(right)].id));
      if (it != merges_.end())
        queue.emplace(it->second.rank, left, symbols[static_cast<std::size_t>(left)].id, symbols[static_cast<std::size_t>(right)].id);
    };
    for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) offer(i);
    while (!queue.empty()) {
      const auto [rank, left, left_id, right_id] = queue.top();
      queue.pop();
      Symbol& l = symbols[static_cast<std::size_t>(left)];
      if (l.id != left_id || l.next < 0 || symbols[static_cast<std::size_t>(l.next)].id != right_id) continue;  // stale
      const int right = l.next;
      if (symbols[static_cast<std::size_t>(right)].id < 0) continue;
      l.id = merges_.at(pair_key(left_id, right_id)).merged;
      Symbol& r = symbols[static_cast<std::size_t>(right)];
      r.id = -1;  // gone
      l.next = r.next;
      if (r.next >= 0) symbols[static_cast<std::size_t>(r.next)].prev = left;
      offer(l.prev);
      offer(left);
    }
    for (int i = 0; i >= 0 && i < static_cast<int>(symbols.size()); i = symbols[static_cast<std::size_t>(i)].next) {
      if (symbols[static_cast<std::size_t>(i)].id != kNoToken) {
        out.push_back(symbols[static_cast<std::size_t>(i)].id);
        continue;
      }
      for (const char c : characters[static_cast<std::size_t>(i)]) {  // byte fallback
        const std::int32_t id = byte_token_[static_cast<unsigned char>(c)];
        detail::require(id >= 0, v_.name + ": no token for byte " + std::to_string(static_cast<unsigned char>(c)));
        out.push_back(id);
      }
    }
  }

  BpeVocabulary v_;
  PreTokenizer pre_;
  std::unordered_map<std::string, std::int32_t> ids_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  std::array<std::vector<std::int32_t>, 256> added_;  // control and user-defined tokens by first byte, longest first
  std::array<std::int32_t, 256> byte_token_{};
  std::array<std::string, 256> byte_char_;
  std::unordered_map<std::int32_t, std::uint8_t> byte_of_token_;  // not byte-level: <0xXX> -> its byte
  static constexpr std::size_t kCacheWords = 1 << 16;
  static constexpr std::int32_t kNoToken = -2;
  static constexpr const char* kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;  // not for concurrent use
  std::unordered_map<std::string, std::uint8_t> char_byte_;
};

}  // namespace autoround
