#pragma once
// Python's `random` module, bit for bit: MT19937 seeded as random.seed(int) seeds it
// (init_by_array over the seed's 32-bit words), getrandbits, and random.shuffle. The
// reference draws its minibatches with random.shuffle (seed 42), so we can draw the same ones.
#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace autoround {

class PythonRandom {
 public:
  explicit PythonRandom(std::uint64_t seed) {
    std::vector<std::uint32_t> key;
    do {  // the seed's absolute value as little-endian 32-bit words; 0 gives [0]
      key.push_back(static_cast<std::uint32_t>(seed & 0xffffffffu));
      seed >>= 32;
    } while (seed != 0);
    init_by_array(key);
  }

  std::uint32_t next_u32() {
    if (index_ >= N) twist();
    std::uint32_t y = state_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

  /// random.getrandbits(k) for 1 <= k <= 32.
  std::uint32_t getrandbits(int k) { return next_u32() >> (32 - k); }

  /// random._randbelow(n): rejection sampling on bit_length(n) bits.
  std::uint32_t below(std::uint32_t n) {
    int k = 0;
    while ((n >> k) != 0) ++k;
    std::uint32_t r = getrandbits(k);
    while (r >= n) r = getrandbits(k);
    return r;
  }

  template <class T>
  void shuffle(std::vector<T>& x) {
    for (std::size_t i = x.size(); i-- > 1;) std::swap(x[i], x[below(static_cast<std::uint32_t>(i + 1))]);
  }

  static constexpr int state_words = 625;  ///< the 624 words of MT19937 and the position in them
  /// The whole state (random.getstate()'s numbers): a resumed run continues the stream from it.
  std::array<std::uint32_t, state_words> state() const {
    std::array<std::uint32_t, state_words> s{};
    std::copy(state_.begin(), state_.end(), s.begin());
    s[N] = static_cast<std::uint32_t>(index_);
    return s;
  }
  /// Continue from a state() (random.setstate()).
  void set_state(const std::array<std::uint32_t, state_words>& s) {
    if (s[N] > static_cast<std::uint32_t>(N)) throw std::invalid_argument("PythonRandom::set_state: position out of range");
    std::copy(s.begin(), s.begin() + N, state_.begin());
    index_ = static_cast<int>(s[N]);
  }

 private:
  static constexpr int N = 624, M = 397;

  void init_genrand(std::uint32_t s) {
    state_[0] = s;
    for (int i = 1; i < N; ++i)
      state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<std::uint32_t>(i);
    index_ = N;
  }

  void init_by_array(const std::vector<std::uint32_t>& key) {
    init_genrand(19650218u);
    int i = 1;
    std::size_t j = 0;
    for (std::size_t k = std::max<std::size_t>(N, key.size()); k > 0; --k) {
      state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525u)) + key[j] +
                  static_cast<std::uint32_t>(j);
      if (++i >= N) state_[0] = state_[N - 1], i = 1;
      if (++j >= key.size()) j = 0;
    }
    for (int k = N - 1; k > 0; --k) {
      state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941u)) - static_cast<std::uint32_t>(i);
      if (++i >= N) state_[0] = state_[N - 1], i = 1;
    }
    state_[0] = 0x80000000u;
  }

  void twist() {
    for (int i = 0; i < N; ++i) {
      const std::uint32_t y = (state_[i] & 0x80000000u) | (state_[(i + 1) % N] & 0x7fffffffu);
      state_[i] = state_[(i + M) % N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    index_ = 0;
  }

  std::array<std::uint32_t, N> state_{};
  int index_ = N;
};

}  // namespace autoround
