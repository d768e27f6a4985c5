// SentencePieceTokenizer (libsentencepiece through tokenizer/sentencepiece_tokenizer.hpp) on a real
// SentencePiece model and real text (test_model.model and botchan.txt from the sentencepiece
// 0.2.1 source distribution, scripts/fetch-assets.sh) against the ids Google's Python package
// gives for the same text (tests/fixtures/botchan_spm_ids.txt, scripts/make_spm_fixture.py).
#include <doctest/doctest.h>

#include <autoround/format/gguf_reader.hpp>
#include <autoround/format/gguf_writer.hpp>
#include <autoround/tokenizer/model_tokenizer.hpp>
#include <autoround/tokenizer/sentencepiece_tokenizer.hpp>
#include <autoround/tokenizer/tokenizer.hpp>
#include <autoround/model/token_file.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/assets.hpp"
#include "support/vocab_cases.hpp"

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

TEST_CASE("SentencePiece from GGUF: llama.cpp's vocabulary test files (ids of the Hugging Face tokenizers)") {
  // LLaMA's and Phi-3's vocabularies as GGUF stores them (tokenizer.ggml.model "llama"): turned
  // back into a model the library loads (tokenizer/gguf_sentencepiece.hpp); the .out ids were
  // written by each model's own Hugging Face tokenizer, which this test does not run.
  for (const std::string name : {"llama-spm", "phi-3"}) {
    CAPTURE(name);
    const std::string path = test_assets::vocab(name);
    const GgufFile gguf(path);
    const SentencePieceTokenizer tokenizer(sentencepiece_model_from_gguf(gguf));
    CHECK(tokenizer.vocab_size() == static_cast<int>(gguf.find("tokenizer.ggml.tokens")->array.size()));
    CHECK(tokenizer.bos_id() == 1);
    const auto cases = test_vocab::read_cases(path + ".inp", path + ".out");
    test_vocab::check_cases(name, cases, [&](const std::string& text) { return tokenizer.encode(text, /*add_bos=*/false); });
  }
}

TEST_CASE("SentencePiece from GGUF: BOS as the file says; control tokens in text only when asked; the program's choice") {
  const std::string path = test_assets::vocab("phi-3");
  const GgufFile gguf(path);
  const SentencePieceTokenizer plain(sentencepiece_model_from_gguf(gguf));
  const SentencePieceTokenizer special(sentencepiece_model_from_gguf(gguf), /*parse_special=*/true);
  const auto hello = plain.encode("Hello", false);
  REQUIRE(!hello.empty());
  CHECK(plain.encode("Hello").front() == 1);  // tokenizer.ggml.add_bos_token
  // "<|user|>" is control token 32010 and "<|end|>" 32007 (the file's token list): one id each
  // only with parse_special, and each text piece after a control token gets its space prefix again
  const auto with = special.encode("<|user|>Hello<|end|>", false);
  std::vector<std::int32_t> expected{32010};
  expected.insert(expected.end(), hello.begin(), hello.end());
  expected.push_back(32007);
  CHECK(with == expected);
  const auto without = plain.encode("<|user|>Hello<|end|>", false);
  CHECK(std::find(without.begin(), without.end(), 32010) == without.end());
  CHECK(without.size() > expected.size());
  CHECK(plain.decode(without) == "<|user|>Hello<|end|>");

  // the program picks SentencePiece for a GGUF whose tokenizer.ggml.model is "llama"
  const AnyTokenizer chosen = tokenizer_for_model(test_assets::vocab("llama-spm"));
  CHECK(chosen.kind() == "SentencePiece (GGUF)");
  CHECK(chosen.encode("Hello world") == std::vector<std::int32_t>{1, 15043, 3186});  // llama-spm.gguf.out: 15043 3186
}

TEST_CASE("SentencePiece from GGUF: a broken vocabulary is refused with the file's name and the key") {
  const auto path = (std::filesystem::temp_directory_path() / "autoround_bad_spm.gguf").string();
  auto strings = [](std::vector<std::string> v) {
    GgufValue a;
    a.kind = GgufValue::Kind::Array;
    a.type = GgufType::Array;
    a.element_type = GgufType::String;
    for (auto& text : v) {
      GgufValue e;
      e.kind = GgufValue::Kind::String;
      e.type = GgufType::String;
      e.s = text;
      a.array.push_back(e);
    }
    return a;
  };
  auto numbers = [](std::vector<float> v, bool as_float) {
    GgufValue a;
    a.kind = GgufValue::Kind::Array;
    a.type = GgufType::Array;
    a.element_type = as_float ? GgufType::F32 : GgufType::I32;
    for (float x : v) {
      GgufValue e;
      e.kind = as_float ? GgufValue::Kind::Float : GgufValue::Kind::Signed;
      e.type = a.element_type;
      e.f = x;
      e.i = static_cast<std::int64_t>(x);
      a.array.push_back(e);
    }
    return a;
  };
  auto write = [&](std::vector<std::string> tokens, std::vector<float> scores, std::vector<float> types, std::uint32_t unk) {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("tokenizer.ggml.model", "llama");
    w.set("tokenizer.ggml.tokens", strings(std::move(tokens)));
    w.set("tokenizer.ggml.scores", numbers(std::move(scores), true));
    w.set("tokenizer.ggml.token_type", numbers(std::move(types), false));
    w.set_u32("tokenizer.ggml.unknown_token_id", unk);
    w.write(path);
    return GgufFile(path);
  };
  // a good vocabulary loads and runs (hand-worked BPE by score, U+2581 for the space prefix):
  // "ab" -> _ a b -> _ ab (best pair, score -1) -> _ab; "ba" has no pair in the vocabulary
  const std::string space = "\xe2\x96\x81";
  const SentencePieceTokenizer tiny(
      sentencepiece_model_from_gguf(write({"<unk>", space + "ab", "ab", "a", "b", space}, {0, -2, -1, -3, -3, -4}, {2, 1, 1, 1, 1, 1}, 0)));
  CHECK(tiny.encode("ab", false) == std::vector<std::int32_t>{1});
  CHECK(tiny.encode("ba", false) == std::vector<std::int32_t>{5, 4, 3});
  CHECK(tiny.encode("c", false) == std::vector<std::int32_t>{5, 0});  // no byte tokens: unknown
  CHECK_THROWS_WITH_AS(sentencepiece_model_from_gguf(write({"<unk>", "a", "b"}, {0, -1}, {2, 1, 1}, 0)),
                       doctest::Contains("one entry per token"), Error);
  CHECK_THROWS_WITH_AS(sentencepiece_model_from_gguf(write({"<unk>", "a", "b"}, {0, -1, -2}, {2, 1, 1}, 7)),
                       doctest::Contains("unknown_token_id 7"), Error);
  CHECK_THROWS_WITH_AS(sentencepiece_model_from_gguf(write({"<unk>", "", "b"}, {0, -1, -2}, {2, 1, 1}, 0)),
                       doctest::Contains("token 1 is empty"), Error);
  // duplicated pieces: the library refuses the model, and the message names the file
  CHECK_THROWS_WITH_AS(SentencePieceTokenizer(sentencepiece_model_from_gguf(write({"<unk>", "a", "a"}, {0, -1, -2}, {2, 1, 1}, 0))),
                       doctest::Contains(path.c_str()), Error);
  const GgufFile bpe(test_assets::vocab("llama-bpe"));
  CHECK_THROWS_WITH_AS(sentencepiece_model_from_gguf(bpe), doctest::Contains("not SentencePiece"), Error);
  std::filesystem::remove(path);
}
