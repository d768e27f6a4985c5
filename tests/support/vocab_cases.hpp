#pragma once
// llama.cpp's tokenizer test files (test-tokenizer-0): ggml-vocab-NAME.gguf.inp holds texts
// separated by "\n__ggml_vocab_test__\n", .out one line of ids per text, written by the model's
// own Hugging Face tokenizer (llama.cpp's convert_hf_to_gguf_update.py).
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace test_vocab {

inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot open " << p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct VocabCase {
  std::string text;
  std::vector<std::int32_t> ids;
};

// test-tokenizer-0's format: texts separated by "\n__ggml_vocab_test__\n", one line of ids each
inline std::vector<VocabCase> read_cases(const std::filesystem::path& inp, const std::filesystem::path& out) {
  const std::string raw = read_all(inp), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (std::size_t pos = 0; pos < raw.size();) {
    const std::size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream ids(out);
  std::vector<VocabCase> cases;
  std::string line;
  for (std::size_t i = 0; std::getline(ids, line); ++i) {
    REQUIRE(i < texts.size());
    VocabCase c{texts[i], {}};
    std::istringstream in(line);
    for (std::int32_t id; in >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  REQUIRE(cases.size() == texts.size());
  return cases;
}

/// Checks that `encode(text)` gives each case's ids (a mismatch is shown with both id lists) and
/// reports how many of them matched.
template <class Encode>
void check_cases(const std::string& name, const std::vector<VocabCase>& cases, Encode encode) {
  std::size_t equal = 0;
  for (const VocabCase& c : cases) {
    const std::vector<std::int32_t> ids = encode(c.text);
    if (ids == c.ids) {
      ++equal;
      continue;
    }
    std::string got, want;
    for (auto i : ids) got += " " + std::to_string(i);
    for (auto i : c.ids) want += " " + std::to_string(i);
    MESSAGE(name << ": text '" << c.text << "'\n  ours:" << got << "\n  want:" << want);
  }
  MESSAGE(name << ": " << equal << " of " << cases.size() << " texts tokenized exactly");
  CHECK(equal == cases.size());
}

}  // namespace test_vocab
