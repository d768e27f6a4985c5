// Tokenizing speed of ByteLevelBpe, single-threaded: a text file repeated to at least MB
// megabytes, encoded in one call (as `autoround quantize --calibration book.txt` does), best of
// three runs. Prints one table row; bench/tokenizer_speed.sh puts Hugging Face tokenizers' row
// (scripts/hf_tokenize_speed.py, same text, same machine, same run) beside it.
//
//   bench_tokenizer MODEL.gguf TEXT [MB=10]
#include <autoround/format/gguf_reader.hpp>
#include <autoround/tokenizer/byte_level_bpe.hpp>
#include <autoround/tokenizer/gguf_vocabulary.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_tokenizer MODEL.gguf TEXT [MB=10]\n");
    return 2;
  }
  try {
    const double megabytes = argc > 3 ? std::stod(argv[3]) : 10.0;
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw autoround::Error(std::string(argv[2]) + ": cannot open");
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string one = buffer.str();
    std::string text;
    while (static_cast<double>(text.size()) < megabytes * 1e6) text += one;
    const autoround::GgufFile gguf(argv[1]);
    double best = 1e30;
    std::size_t tokens = 0;
    for (int run = 0; run < 3; ++run) {
      const autoround::ByteLevelBpe bpe(autoround::bpe_vocabulary_from_gguf(gguf));  // a fresh word cache each run
      const auto start = std::chrono::steady_clock::now();
      tokens = bpe.encode(text, false).size();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::printf("| autoround ByteLevelBpe | %.1f MB | %zu | %.2f s | %.1f MB/s |\n", static_cast<double>(text.size()) / 1e6, tokens, best,
                static_cast<double>(text.size()) / 1e6 / best);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}
