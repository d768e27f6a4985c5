#pragma once
// Token-id files: whitespace-separated decimal ids, as scripts/tokenize_gguf.py writes them
// with the model's own tokenizer.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace autoround {

inline std::vector<std::int32_t> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open token file");
  std::vector<std::int32_t> ids;
  std::string word;
  while (in >> word) {
    std::size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < 0 || id > INT32_MAX)
      throw Error(path + ": '" + word + "' (token " + std::to_string(ids.size()) + ") is not a token id");
    ids.push_back(static_cast<std::int32_t>(id));
  }
  if (ids.empty()) throw Error(path + ": no tokens");
  return ids;
}

}  // namespace autoround
