#pragma once
// A compiled regular expression with Unicode properties (\p{L}, \p{N}, \s as Unicode White_Space),
// for the pre-tokenizers of byte-level BPE tokenizers. PCRE2 (Debian's libpcre2-8) in UTF + UCP
// mode runs the Hugging Face tokenizer.json patterns as written (lookahead included), and its
// JIT keeps tokenizing fast; writing our own engine for \p{...} classes would mean shipping
// Unicode tables (docs/dependencies.md). Link autoround::pcre2.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "../core/error.hpp"

namespace autoround {

class Regex {
 public:
  /// Compiles `pattern` (UTF-8) in UTF + UCP mode; throws Error naming the pattern and the
  /// position if it does not compile.
  explicit Regex(std::string pattern) : pattern_(std::move(pattern)) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(), PCRE2_UTF | PCRE2_UCP, &error,
                                     &offset, nullptr);
    if (!code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      throw Error("regular expression '" + pattern_ + "' at " + std::to_string(offset) + ": " + reinterpret_cast<const char*>(message));
    }
    code_.reset(code);
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // the interpreter when JIT is not available
    match_.reset(pcre2_match_data_create_from_pattern(code, nullptr));
  }

  const std::string& pattern() const { return pattern_; }

  /// Calls f(begin, end) for each successive non-overlapping match in `text` (byte offsets),
  /// scanning left to right as a tokenizer's Split does; an empty match advances one character.
  /// `text` must be valid UTF-8.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    PCRE2_SIZE start = 0;
    while (start <= text.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, match_.get(), nullptr)
                          : pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, match_.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) throw Error("regular expression '" + pattern_ + "': match failed (" + std::to_string(rc) + ")");
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_.get());
      const std::size_t begin = ovector[0], end = ovector[1];
      if (end > begin) {
        f(begin, end);
        start = end;
      } else {  // empty match: step over one UTF-8 character
        start = begin + 1;
        while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
      }
    }
  }

 private:
  struct FreeCode {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
  };
  struct FreeMatch {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
  };
  std::string pattern_;
  std::unique_ptr<pcre2_code, FreeCode> code_;
  std::unique_ptr<pcre2_match_data, FreeMatch> match_;  // scratch: a Regex is not for concurrent use
  bool jit_ = false;
};

/// True when `text` is valid UTF-8 (PCRE2 is then run without its own check).
inline bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    std::uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

}  // namespace autoround
