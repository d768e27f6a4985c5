// fp16 conversion: hand-picked values, and every float class against the compiler's _Float16.
#include <doctest/doctest.h>

#include <autoround/core/fp16.hpp>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

namespace test_fp16 {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using autoround::float_to_half_bits;
using autoround::half_bits_to_float;

TEST_CASE("fp16 conversion of hand-checked values") {
  CHECK(float_to_half_bits(1.0f) == 0x3c00);
  CHECK(float_to_half_bits(-2.0f) == 0xc000);
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);            // largest finite half
  CHECK(float_to_half_bits(65519.0f) == 0x7bff);            // still rounds down
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);            // halfway to 2^16 rounds to inf
  CHECK(float_to_half_bits(0.1f) == 0x2e66);                // 0.0999755859375
  CHECK(float_to_half_bits(1.0f + 0x1p-11f) == 0x3c00);     // tie to even (down)
  CHECK(float_to_half_bits(1.0f + 3 * 0x1p-11f) == 0x3c02); // tie to even (up)
  CHECK(float_to_half_bits(0x1p-24f) == 0x0001);            // smallest subnormal
  CHECK(float_to_half_bits(0x1p-25f) == 0x0000);            // tie between 0 and 2^-24: even
  CHECK(float_to_half_bits(1.5f * 0x1p-25f) == 0x0001);
  CHECK(float_to_half_bits(1e-5f) == 0x00a8);               // AutoRound's scale threshold: 168 * 2^-24
  CHECK(half_bits_to_float(0x00a8) == doctest::Approx(1.0013580322265625e-05).epsilon(1e-12));
  CHECK(std::isnan(half_bits_to_float(float_to_half_bits(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(half_bits_to_float(float_to_half_bits(-std::numeric_limits<float>::infinity())) ==
        -std::numeric_limits<float>::infinity());
}

TEST_CASE("every half value survives half -> float -> half") {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x3ff)) continue;  // NaN payloads
    REQUIRE(float_to_half_bits(half_bits_to_float(bits)) == bits);
  }
}

#if defined(__FLT16_MAX__)
TEST_CASE("float -> half agrees with the compiler's _Float16 on a million floats") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  int checked = 0;
  for (int i = 0; i < 1000000; ++i) {
    // spread over exponents where halves live, including subnormals and overflow
    const std::uint32_t f = (any_bits(rng) & 0x807fffffu) | ((90u + any_bits(rng) % 60u) << 23);
    const float x = std::bit_cast<float>(f);
    const auto expected = std::bit_cast<std::uint16_t>(static_cast<_Float16>(x));
    REQUIRE(float_to_half_bits(x) == expected);
    ++checked;
  }
  CHECK(checked == 1000000);
}
#endif
}  // namespace test_fp16
