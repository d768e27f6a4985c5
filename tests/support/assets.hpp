#pragma once
// Where the real model and text live (scripts/fetch-assets.sh puts them there), and what a test
// does when they are missing: outside CI it is skipped loudly (exit 77, shown as skipped by
// CTest); in CI (CI set in the environment) it fails, since CI must run it.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace test_assets {

inline std::string dir() {
  if (const char* env = std::getenv("AUTOROUND_ASSETS"); env && *env) return env;
  return AUTOROUND_ASSETS_DIR;
}
inline std::string model() { return dir() + "/smollm2-135m-instruct-q4_1.gguf"; }
/// model()'s first 6 of 30 blocks, byte for byte: for tests of files and formats, not of accuracy
inline std::string short_model() { return dir() + "/smollm2-135m-6l.gguf"; }
inline std::string calibration_tokens() { return dir() + "/kjv-calib.tokens"; }
inline std::string evaluation_tokens() { return dir() + "/kjv-eval.tokens"; }
inline std::string sentencepiece_model() { return dir() + "/spm-test_model.model"; }
/// A real Gemma 3 (gemma-3-270m, Q4_K_M GGUF) and the evaluation text as text
inline std::string gemma_model() { return dir() + "/gemma-3-270m-q4_k_m.gguf"; }
inline std::string evaluation_text() { return dir() + "/kjv-eval.txt"; }
inline std::string sentencepiece_text() { return dir() + "/botchan.txt"; }
/// llama.cpp's vocabulary test files: vocab("llama-bpe") = DIR/vocab/ggml-vocab-llama-bpe.gguf
inline std::string vocab(const std::string& name) { return dir() + "/vocab/ggml-vocab-" + name + ".gguf"; }

/// Call first in main(): exits when an asset is missing.
inline void require_all() {
  for (const std::string& path : {model(), short_model(), calibration_tokens(), evaluation_tokens(), sentencepiece_model(), sentencepiece_text(),
                                   vocab("llama-bpe"), gemma_model(), evaluation_text()}) {
    if (std::filesystem::exists(path)) continue;
    const bool in_ci = std::getenv("CI") != nullptr;
    std::fprintf(stderr, "%s: asset %s is missing; run scripts/fetch-assets.sh\n",
                 in_ci ? "FAILED (CI must have the assets)" : "SKIPPED", path.c_str());
    std::exit(in_ci ? 1 : 77);
  }
}

}  // namespace test_assets
