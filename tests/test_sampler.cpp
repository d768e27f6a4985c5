// Minibatch sampling identical to the reference's (Python's random with the same seed).
// Expected values printed by CPython 3.11: random.seed(42); l = list(range(10)); random.shuffle(l)
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <vector>

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
