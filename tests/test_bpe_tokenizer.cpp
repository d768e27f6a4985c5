// Byte-level BPE (tokenizer/byte_level_bpe.hpp) on real vocabularies against ids made by the
// Hugging Face tokenizers library, which this test does not run:
//  - llama.cpp's vocabulary test files (ggml-vocab-NAME.gguf with .inp texts and .out ids, from
//    the llama.cpp copy in PyPI's llama-cpp-python 0.3.36 sdist; scripts/fetch-assets.sh puts
//    them in ASSETS/vocab/): the .out ids were written by the model's own Hugging Face tokenizer
//    (llama.cpp's convert_hf_to_gguf_update.py), the texts exercise whitespace runs, digits,
//    contractions, emoji, CJK, Cyrillic, Khmer;
//  - the asset model (SmolLM2, pre-tokenizer "smollm") on two whole books: kjv-calib.tokens and
//    botchan.tokens were written by scripts/tokenize_gguf.py (tokenizers' BPE + Digits + ByteLevel);
//  - Llama 3 and Qwen2 on three long texts (scripts/make_bpe_expectations.py), from the GGUF and
//    from the tokenizer.json Hugging Face tokenizers saved.
#include <doctest/doctest.h>

#include <autoround/export/tokenizer_files.hpp>
#include <autoround/format/gguf_reader.hpp>
#include <autoround/model/token_file.hpp>
#include <autoround/tokenizer/byte_level_bpe.hpp>
#include <autoround/tokenizer/gguf_vocabulary.hpp>
#include <autoround/tokenizer/hf_tokenizer_json.hpp>
#include <autoround/tokenizer/model_tokenizer.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/assets.hpp"
#include "support/vocab_cases.hpp"

using namespace autoround;
namespace fs = std::filesystem;

using test_vocab::read_all;
using test_vocab::read_cases;
using test_vocab::VocabCase;

TEST_CASE("byte-level BPE: llama.cpp's vocabulary test files (ids of the Hugging Face tokenizers)") {
  // gemma-4: the same BPE on UTF-8 characters with U+2581 spaces and <0xXX> byte fallback
  for (const std::string name : {"gpt-2", "llama-bpe", "qwen2", "qwen35", "mpt", "starcoder", "refact", "command-r", "falcon",
                           "deepseek-llm", "deepseek-coder", "gemma-4"}) {
    CAPTURE(name);
    const fs::path gguf_path = test_assets::vocab(name);
    const GgufFile gguf(gguf_path.string());
    const ByteLevelBpe bpe(bpe_vocabulary_from_gguf(gguf));
    const auto cases = read_cases(gguf_path.string() + ".inp", gguf_path.string() + ".out");
    test_vocab::check_cases(name, cases, [&](const std::string& text) {
      const auto ids = bpe.encode(text, /*add_special=*/false);
      CHECK(bpe.decode(ids) == text);
      return ids;
    });
  }
}

TEST_CASE("byte-level BPE: the asset model's tokenizer on two whole books equals Hugging Face tokenizers") {
  const GgufFile gguf(test_assets::model());
  const ByteLevelBpe bpe(bpe_vocabulary_from_gguf(gguf));
  CHECK(bpe.vocabulary().pre == "smollm");
  for (const std::string book : {"kjv-calib", "botchan"}) {
    CAPTURE(book);
    // tokenize_gguf.py read the text as Python does in text mode: "\r\n" became "\n"
    const std::string raw = read_all(fs::path(test_assets::dir()) / (book + ".txt"));
    std::string text;
    for (std::size_t i = 0; i < raw.size(); ++i)
      if (raw[i] != '\r' || i + 1 == raw.size() || raw[i + 1] != '\n') text += raw[i];
    const std::vector<std::int32_t> want = read_token_file((fs::path(test_assets::dir()) / (book + ".tokens")).string());
    const auto ids = bpe.encode(text, /*add_special=*/false);
    std::size_t first = 0;
    while (first < std::min(ids.size(), want.size()) && ids[first] == want[first]) ++first;
    MESSAGE(book << ": " << text.size() << " bytes, " << ids.size() << " tokens (want " << want.size() << "), first difference at " << first);
    CHECK(ids == want);
    CHECK(bpe.decode(ids) == text);
  }
}

TEST_CASE("byte-level BPE: Llama 3 and Qwen2 on long real texts, from GGUF and from tokenizer.json, equal Hugging Face tokenizers") {
  // NAME.TEXT.tokens and NAME.tokenizer.json: scripts/make_bpe_expectations.py (tokenizers 0.23.3),
  // run by scripts/fetch-assets.sh; mixed.txt: every .inp file of llama.cpp's vocab tests together
  const fs::path vocab = fs::path(test_assets::dir()) / "vocab";
  for (const std::string name : {"llama-bpe", "qwen2"}) {
    const GgufFile gguf(test_assets::vocab(name));
    const ByteLevelBpe from_gguf(bpe_vocabulary_from_gguf(gguf));
    const ByteLevelBpe from_json(bpe_vocabulary_from_tokenizer_json(vocab / (name + ".tokenizer.json")));
    CHECK(from_json.vocabulary().ignore_merges == (name == "llama-bpe"));
    for (const std::string text_name : {"mixed", "kjv-calib", "botchan"}) {
      CAPTURE(name);
      CAPTURE(text_name);
      const fs::path text_path = text_name == "mixed" ? vocab / "mixed.txt" : fs::path(test_assets::dir()) / (text_name + ".txt");
      const std::string text = read_all(text_path);
      const auto want = read_token_file((vocab / (name + "." + text_name + ".tokens")).string());
      const auto a = from_gguf.encode(text, false), b = from_json.encode(text, false);
      std::size_t first = 0;
      while (first < std::min(a.size(), want.size()) && a[first] == want[first]) ++first;
      MESSAGE(name << " " << text_name << ": " << text.size() << " bytes, " << a.size() << " tokens (want " << want.size()
                   << "), first difference at " << first);
      CHECK(a == want);
      CHECK(b == want);
      CHECK(from_gguf.decode(a) == text);
    }
  }
}

TEST_CASE("tokenizer.json exported from each vocabulary's GGUF tokenizes as the GGUF does") {
  // what export writes next to a checkpoint of a GGUF model (tokenizer_files_from_gguf): read
  // back by the tokenizer.json path, the same ids on the mixed text, the same BOS rule. With
  // AUTOROUND_TOKENIZER_JSON_OUT=DIR the files and our ids stay in DIR/NAME/ for transformers to
  // check (CTest tokenizer_json_readback, scripts/check_tokenizer_json.py).
  const std::string mixed = read_all(fs::path(test_assets::dir()) / "vocab" / "mixed.txt");
  const char* keep = std::getenv("AUTOROUND_TOKENIZER_JSON_OUT");
  const fs::path root = keep ? fs::path(keep) : fs::temp_directory_path() / "autoround_test_tokenizer_json";
  for (const std::string name : {"gpt-2", "llama-bpe", "qwen2", "qwen35", "mpt", "starcoder", "refact", "command-r", "falcon",
                                 "deepseek-llm", "deepseek-coder"}) {
    CAPTURE(name);
    const fs::path dir = root / name;
    const GgufFile gguf(test_assets::vocab(name));
    const TokenizerFiles files = tokenizer_files_from_gguf(gguf);
    fs::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << files.tokenizer.dump();
    std::ofstream(dir / "tokenizer_config.json") << files.tokenizer_config.dump();
    const ByteLevelBpe from_gguf(bpe_vocabulary_from_gguf(gguf));
    const ByteLevelBpe from_json(bpe_vocabulary_from_tokenizer_json(dir));
    const auto ids = from_gguf.encode(mixed, true);
    CHECK(from_json.encode(mixed, true) == ids);
    CHECK(from_json.encode("Hello", true) == from_gguf.encode("Hello", true));
    CHECK(from_json.vocabulary().add_bos == from_gguf.vocabulary().add_bos);
    if (keep) {
      std::ofstream out(dir / "ours.mixed.tokens");
      for (auto id : ids) out << id << '\n';
    }
  }
  if (!keep) fs::remove_all(root);
}

TEST_CASE("byte-level BPE: special tokens in text only when asked; BOS as the vocabulary says") {
  const GgufFile gguf(test_assets::vocab("llama-bpe"));
  const ByteLevelBpe bpe(bpe_vocabulary_from_gguf(gguf));
  const std::int32_t bos = *bpe.vocabulary().bos;
  CHECK(bpe.vocabulary().tokens[static_cast<std::size_t>(bos)] == "<|begin_of_text|>");
  const std::string text = "<|begin_of_text|>Hello";
  const auto plain = bpe.encode(text, false, false), parsed = bpe.encode(text, false, true);
  CHECK(parsed.size() == 2);
  CHECK(parsed[0] == bos);
  CHECK(plain.size() > 2);  // the marker spelled out as ordinary text
  CHECK(std::find(plain.begin(), plain.end(), bos) == plain.end());
  CHECK(bpe.decode(plain) == text);
  // Llama 3's GGUF asks for BOS first (add_bos_token)
  CHECK(bpe.vocabulary().add_bos);
  CHECK(bpe.encode("Hello", true).front() == bos);
  // the same through tokenizer_for_model (the program's --parse-special)
  const auto asked = tokenizer_for_model(test_assets::vocab("llama-bpe"), "", true).encode(text);
  const auto not_asked = tokenizer_for_model(test_assets::vocab("llama-bpe")).encode(text);
  CHECK(asked == std::vector<std::int32_t>{bos, bos, parsed[1]});  // BOS added, then the one written
  CHECK(not_asked.size() == plain.size() + 1);
}

static_assert(Tokenizer<ByteLevelBpe>);
static_assert(Tokenizer<AnyTokenizer>);

TEST_CASE("tokenizer_for_model picks the model's byte-level BPE (GGUF, or a directory's tokenizer.json)") {
  const AnyTokenizer from_gguf = tokenizer_for_model(test_assets::model());
  CHECK(from_gguf.kind() == "byte-level BPE (GGUF)");
  CHECK(from_gguf.vocab_size() == 49152);
  const fs::path dir = fs::temp_directory_path() / "autoround_test_model_tokenizer";
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer_files_from_gguf(GgufFile(test_assets::model())).tokenizer.dump();
  const AnyTokenizer from_dir = tokenizer_for_model(dir);
  CHECK(from_dir.kind() == "byte-level BPE (tokenizer.json)");
  const std::string text = "In the beginning God created the heaven and the earth. 1234 tokens";
  CHECK(from_dir.encode(text) == from_gguf.encode(text));
  fs::remove(dir / "tokenizer.json");
  CHECK_THROWS_WITH_AS(tokenizer_for_model(dir), doctest::Contains("no tokenizer to run"), Error);
  fs::remove_all(dir);

  // Gemma 4 (tokenizer.ggml.model "gemma4"): runs, BOS first (add_bos_token), but has no exporter
  const GgufFile gemma(test_assets::vocab("gemma-4"));
  const AnyTokenizer gemma_tokenizer = tokenizer_for_model(test_assets::vocab("gemma-4"));
  const auto ids = gemma_tokenizer.encode("Hello world");
  REQUIRE(ids.size() >= 2);
  CHECK(ids.front() == static_cast<std::int32_t>(gemma.get_uint("tokenizer.ggml.bos_token_id")));
  CHECK_THROWS_WITH_AS(tokenizer_files_from_gguf(gemma), doctest::Contains("not supported"), Error);
}

TEST_CASE("byte-level BPE: bad input is refused with the vocabulary's name") {
  BpeVocabulary v;
  v.name = "tiny";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(detail::utf8(detail::byte_alphabet()[static_cast<std::size_t>(b)]));
  v.tokens.push_back("ab");
  v.merges = {"a b"};
  const ByteLevelBpe bpe(v);
  CHECK(bpe.encode("ab", false) == std::vector<std::int32_t>{256});
  CHECK(bpe.encode("aab", false) == std::vector<std::int32_t>{'a', 256});
  CHECK_THROWS_WITH_AS(bpe.encode(std::string("\xff\xfe", 2), false), doctest::Contains("tiny"), Error);
  CHECK_THROWS_WITH_AS(bpe.decode(std::vector<std::int32_t>{999}), doctest::Contains("999"), Error);
  BpeVocabulary bad = v;
  bad.pre = "no-such-pre";
  CHECK_THROWS_WITH_AS(ByteLevelBpe{bad}, doctest::Contains("no-such-pre"), Error);
  bad = v;
  bad.merges = {"ab"};
  CHECK_THROWS_WITH_AS(ByteLevelBpe{bad}, doctest::Contains("not 'left right'"), Error);
}
