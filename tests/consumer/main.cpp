// Built against the installed package: quantizes a small weight and checks a worked value.
#include <autoround/autoround.hpp>
#include <cstdio>

int main() {
  autoround::RowMatrix w(1, 4);
  w << -1.0f, 0.25f, 0.5f, 2.0f;
  const auto q = autoround::quantize_rtn(autoround::IntQuantizer<2, 4, autoround::Asymmetric>{}, autoround::view(w));
  // scale (2 - -1) / 3 = 1, zero 1: codes 0, 1, 1 (0.5 rounds to even), 3
  const bool ok = q.scales[0] == 1.0f && q.zeros[0] == 1 && q.code(0, 0) == 0 && q.code(0, 2) == 1 && q.code(0, 3) == 3;
  std::puts(ok ? "consumer: ok" : "consumer: WRONG codes");
  return ok ? 0 : 1;
}
