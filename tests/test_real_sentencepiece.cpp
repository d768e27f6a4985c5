// SentencePieceTokenizer (libsentencepiece through model/sentencepiece_tokenizer.hpp) on a real
// SentencePiece model and real text (test_model.model and botchan.txt from the sentencepiece
// 0.2.1 source distribution, scripts/fetch-assets.sh) against the ids Google's Python package
// gives for the same text (tests/fixtures/botchan_spm_ids.txt, scripts/make_spm_fixture.py).
#include <doctest/doctest.h>

#include <autoround/model/sentencepiece_tokenizer.hpp>
#include <autoround/tokenizer/tokenizer.hpp>
#include <autoround/model/token_file.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/assets.hpp"

using namespace autoround;

static_assert(Tokenizer<SentencePieceTokenizer>);  // tokenizer/tokenizer.hpp

namespace {
std::string first_lines(const std::string& path, int count) {
  std::ifstream in(path, std::ios::binary);
  std::string line, text;
  for (int i = 0; i < count && std::getline(in, line); ++i) text += (i ? "\n" : "") + line;
  return text;
}
}  // namespace

TEST_CASE("SentencePiece: our encoding equals the reference library's on real text") {
  const SentencePieceTokenizer tokenizer(test_assets::sentencepiece_model());
  CHECK(tokenizer.vocab_size() == 1000);
  CHECK(tokenizer.bos_id() == 1);
  const std::string text = first_lines(test_assets::sentencepiece_text(), 300);
  const auto ids = tokenizer.encode(text);
  const auto expected = read_token_file(AUTOROUND_FIXTURES_DIR "/botchan_spm_ids.txt");
  REQUIRE(ids.size() == expected.size());
  CHECK(ids == expected);
  CHECK(ids.front() == tokenizer.bos_id());

  // a line of plain text decodes back to itself; whole-file tokenization is the same stream
  const std::string line = "Title: Botchan (Master Darling)";
  auto line_ids = tokenizer.encode(line, false);
  CHECK(tokenizer.decode(line_ids) == line);
  const auto path = std::filesystem::temp_directory_path() / "autoround_spm_text.txt";
  std::ofstream(path, std::ios::binary) << text;
  CHECK(tokenize_text_file(path.string(), tokenizer) == expected);
  std::filesystem::remove(path);
}

TEST_CASE("SentencePiece: bad input names the file") {
  const auto bogus = std::filesystem::temp_directory_path() / "autoround_not_a_model.model";
  std::ofstream(bogus) << "this is not a protobuf";
  CHECK_THROWS_WITH_AS(SentencePieceTokenizer(bogus.string()), doctest::Contains(bogus.string().c_str()), Error);
  std::filesystem::remove(bogus);
  CHECK_THROWS_WITH_AS(SentencePieceTokenizer("/nonexistent/tokenizer.model"), doctest::Contains("/nonexistent/tokenizer.model"),
                       Error);
  const SentencePieceTokenizer tokenizer(test_assets::sentencepiece_model());
  CHECK_THROWS_WITH_AS(tokenizer.decode({5, 1000}), doctest::Contains("outside the vocabulary"), Error);
  const auto empty = std::filesystem::temp_directory_path() / "autoround_empty.txt";
  std::ofstream(empty) << "";
  CHECK_THROWS_WITH_AS(tokenize_text_file(empty.string(), tokenizer), doctest::Contains("no text"), Error);
  std::filesystem::remove(empty);
}
