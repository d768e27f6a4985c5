// Minibatch sampling identical to the reference's (Python's random with the same seed).
// Expected values printed by CPython 3.11: random.seed(42); l = list(range(10)); random.shuffle(l)
#include <doctest/doctest.h>

#include <autoround/model/calibration_samples.hpp>
#include <autoround/tune/index_sampler.hpp>
#include <autoround/tune/python_random.hpp>
#include <numeric>
#include <vector>

namespace test_sampler {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("PythonRandom reproduces CPython's random.shuffle and getrandbits") {
  PythonRandom random(42);
  std::vector<int> l{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  random.shuffle(l);
  CHECK(l == std::vector<int>{7, 3, 2, 8, 5, 6, 9, 4, 0, 1});
  random.shuffle(l);
  CHECK(l == std::vector<int>{8, 6, 2, 5, 3, 0, 4, 7, 9, 1});

  PythonRandom again(42);
  std::vector<int> sixteen(16);
  for (int i = 0; i < 16; ++i) sixteen[i] = i;
  again.shuffle(sixteen);
  CHECK(sixteen == std::vector<int>{7, 9, 5, 6, 14, 10, 12, 8, 1, 2, 13, 15, 4, 11, 0, 3});
  CHECK(again.getrandbits(32) == 999270936u);
  CHECK(again.getrandbits(32) == 2170484433u);
  CHECK(again.getrandbits(32) == 2585650756u);

  PythonRandom wide((1ULL << 40) + 5);  // a seed of two 32-bit words
  std::vector<int> six{0, 1, 2, 3, 4, 5};
  wide.shuffle(six);
  CHECK(six == std::vector<int>{1, 0, 3, 2, 5, 4});
}

TEST_CASE("IndexSampler walks the shuffled list and reshuffles when a batch does not fit") {
  IndexSampler sampler(10, 4, 42);
  auto as_vector = [](auto span) { return std::vector<Index>(span.begin(), span.end()); };
  CHECK(as_vector(sampler.next_batch()) == std::vector<Index>{7, 3, 2, 8});
  CHECK(as_vector(sampler.next_batch()) == std::vector<Index>{5, 6, 9, 4});
  // two left (0, 1) < 4: the list (as it stands) is shuffled again and the walk restarts
  CHECK(as_vector(sampler.next_batch()) == std::vector<Index>{8, 6, 2, 5});
}

TEST_CASE("calibration_samples: the reference's rule over documents, in Python's shuffle order") {
  // Python: r = random.Random(42); x = list(range(10)); r.shuffle(x) -> [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]
  std::vector<TokenSequence> docs(10);
  for (std::int32_t d = 0; d < 10; ++d)
    for (std::int32_t k = 0; k < 6; ++k) docs[static_cast<std::size_t>(d)].push_back(100 * d + k);
  docs[1].resize(3);                // shorter than seqlen: dropped
  docs[7].resize(2);                // dropped
  docs[3] = {9, 9, 1, 9, 7, 7};     // its window's last token fills 3 of 4 places: degenerate, dropped
  docs[2].resize(4);                // exactly seqlen: kept
  const auto samples = calibration_samples(docs, 3, 4, 42);
  REQUIRE(samples.size() == 3);
  CHECK(samples[0] == TokenSequence{200, 201, 202, 203});
  CHECK(samples[1] == TokenSequence{800, 801, 802, 803});  // cut to its first seqlen tokens
  CHECK(samples[2] == TokenSequence{500, 501, 502, 503});
  // fewer usable documents than asked for: all of them, in shuffled order (the reference warns and goes on)
  const auto all = calibration_samples(docs, 100, 4, 42);
  REQUIRE(all.size() == 7);
  CHECK(all[6].front() == 0);  // doc 0 comes 9th in the order, after the three dropped ones
  CHECK(calibration_samples(docs, 3, 4, 7)[0].front() == 800);  // seed 7: [8, 3, 1, 4, 7, 0, 9, 6, 2, 5]
  CHECK_THROWS_WITH_AS(calibration_samples(docs, 3, 7, 42), doctest::Contains("none of the 10 documents has 7 tokens"), Error);
}

TEST_CASE("consecutive_windows: non-overlapping windows from the start of one stream") {
  std::vector<std::int32_t> tokens(10);
  std::iota(tokens.begin(), tokens.end(), 0);
  const auto w = consecutive_windows(tokens, 3, 3);
  REQUIRE(w.size() == 3);
  CHECK(w[2] == TokenSequence{6, 7, 8});
  CHECK_THROWS_WITH_AS(consecutive_windows(tokens, 4, 3), doctest::Contains("needs more than the 10 calibration tokens"), Error);
}
}  // namespace test_sampler
