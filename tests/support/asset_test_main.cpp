// main() of the tests that need the real model and text: check the assets, then run doctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "assets.hpp"

int main(int argc, char** argv) {
  test_assets::require_all();
  doctest::Context context(argc, argv);
  return context.run();
}
