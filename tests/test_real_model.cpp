// The asset model through our GGUF reader and forward pass: tensor values against the gguf
// package's dequantization (tests/fixtures, scripts/make_gguf_fixture.py), the published
// SmolLM2-135M configuration, and a perplexity far below a uniform guess on held-out text.
#include <doctest/doctest.h>

#include <autoround/model/gguf_source.hpp>
#include <autoround/model/perplexity.hpp>
#include <autoround/model/token_file.hpp>
#include <cmath>
#include <fstream>
#include <sstream>

#include "support/assets.hpp"

namespace test_real_model {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("GGUF tensors dequantize to the values gguf-py gives") {
  const GgufFile file(test_assets::model());
  std::ifstream fixture(AUTOROUND_FIXTURES_DIR "/smollm2_gguf_values.txt");
  REQUIRE(fixture);
  std::string line;
  int checked = 0;
  while (std::getline(fixture, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string name, type;
    Index rows, cols;
    double sum_abs, v[5];
    in >> name >> rows >> cols >> type >> sum_abs >> v[0] >> v[1] >> v[2] >> v[3] >> v[4];
    CAPTURE(name);
    const GgufTensor& t = file.tensor(name);
    CHECK(t.rows() == rows);
    CHECK(t.cols() == cols);
    CHECK(ggml::traits(t.type).name == type);
    const RowMatrix m = file.to_float(t);
    CHECK(m.cast<double>().cwiseAbs().sum() == doctest::Approx(sum_abs).epsilon(1e-6).scale(0));
    for (int k = 0; k < 4; ++k) CHECK(m.data()[k] == doctest::Approx(v[k]).epsilon(1e-6).scale(0));
    CHECK(m.data()[m.size() - 1] == doctest::Approx(v[4]).epsilon(1e-6).scale(0));
    ++checked;
  }
  CHECK(checked == 5);
}

TEST_CASE("SmolLM2-135M loads with its published configuration") {
  const LlamaModel m = load_llama_gguf(test_assets::model());
  CHECK(m.config.layers == 30);
  CHECK(m.config.hidden == 576);
  CHECK(m.config.intermediate == 1536);
  CHECK(m.config.heads == 9);
  CHECK(m.config.kv_heads == 3);
  CHECK(m.config.vocab == 49152);
  CHECK(m.config.rope_theta == 100000.0f);
  CHECK(m.config.tied_embeddings);

  SUBCASE("perplexity on held-out text is far below a uniform guess") {
    const auto tokens = read_token_file(test_assets::evaluation_tokens());
    const PerplexityResult r = perplexity(m, tokens, 512, 2);
    MESSAGE("fp32 (dequantized Q4_1) perplexity on " << r.tokens_scored << " tokens of John: " << r.perplexity
                                                      << " (uniform: " << m.config.vocab << ")");
    CHECK(r.tokens_scored == 2 * 511);
    CHECK(r.perplexity < 30.0);  // measured 14.3
    CHECK(r.perplexity > 2.0);
    // the same text with the other RoPE pairing is much worse: the GGUF convention matters
    LlamaModel wrong = m;
    wrong.config.rope_style = RopeStyle::HalfSplit;
    CHECK(perplexity(wrong, tokens, 512, 1).perplexity > 2 * r.perplexity);
  }
}
}  // namespace test_real_model
