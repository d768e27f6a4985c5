// Each block must fail to compile with a message a person can act on (see tests/CMakeLists.txt).
// The two headers the snippets need, not the umbrella: 2 s of compiling each instead of 14.
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/tune/layer_tuner.hpp>

#if defined(CHECK_bits_out_of_range)
autoround::IntQuantizer<9, 128, autoround::Asymmetric> q;
#elif defined(CHECK_group_size_zero)
autoround::IntQuantizer<4, 0, autoround::Asymmetric> q;
#elif defined(CHECK_not_a_quantizer)
struct NotAQuantizer {
  int bits() const { return 4; }
};
autoround::LayerTuner<NotAQuantizer> tuner;
#endif
