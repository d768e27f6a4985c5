// Peak host memory of streaming quantization (quantize_model_streaming + HfShardWriter) on a
// synthetic Llama-shaped checkpoint far larger than what the process holds: random bf16
// weights (NOT a trained model: shape and memory only), written as a Hugging Face directory.
//
//   bench_streaming_rss make DIR LAYERS [HIDDEN=3072 INTERMEDIATE=8192 HEADS=24 KV_HEADS=8 VOCAB=128256]
//   bench_streaming_rss run DIR OUT [ITERS=1 NSAMPLES=2 SEQLEN=32]
//
// `run` prints one line: layers, parameters, the float32 size of the model, the checkpoint's
// size on disk, the output's size, wall time and peak RSS (getrusage). bench/streaming_rss.sh
// runs both for two layer counts and prints the table of docs/speed.md.
#include <sys/resource.h>

#include <autoround/autoround.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using namespace autoround;
namespace fs = std::filesystem;

namespace {

// xorshift64*: fast, deterministic; uniform in [-a, a] has variance a²/3
struct Random {
  std::uint64_t s;
  float next(float a) {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    const auto u = static_cast<std::uint32_t>((s * 0x2545F4914F6CDD1DULL) >> 40);  // 24 bits
    return a * (2.0f * static_cast<float>(u) / 16777216.0f - 1.0f);
  }
};

void add_bf16(SafetensorsWriter& w, const std::string& name, std::vector<std::int64_t> shape, float scale, Random& rng,
              bool ones = false) {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  std::vector<std::uint16_t> bits(n);
  for (auto& b : bits) {
    const float x = ones ? 1.0f + rng.next(0.1f) : rng.next(scale);
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    b = static_cast<std::uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);  // round to nearest even
  }
  w.add<std::uint16_t>(name, Dtype::BF16, std::move(shape), bits);
}

double gigabytes(std::uintmax_t bytes) { return static_cast<double>(bytes) / 1e9; }

std::uintmax_t directory_bytes(const fs::path& dir) {
  std::uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

int make(const fs::path& dir, Index layers, Index hidden, Index inter, Index heads, Index kv_heads, Index vocab) {
  fs::create_directories(dir);
  const Index head_dim = hidden / heads;
  Random rng{0x9E3779B97F4A7C15ULL};
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  std::uint64_t total = 0;
  char shard[64];
  for (Index b = 0; b <= layers; ++b) {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    std::snprintf(shard, sizeof shard, "model-%05lld-of-%05lld.safetensors", static_cast<long long>(b + 1), static_cast<long long>(layers + 1));
    if (b == layers) {
      add_bf16(w, "model.embed_tokens.weight", {vocab, hidden}, 0.05f, rng);
      add_bf16(w, "model.norm.weight", {hidden}, 0, rng, true);
    } else {
      const std::string p = "model.layers." + std::to_string(b) + ".";
      const float in_h = std::sqrt(3.0f / static_cast<float>(hidden)), in_i = std::sqrt(3.0f / static_cast<float>(inter));
      add_bf16(w, p + "self_attn.q_proj.weight", {heads * head_dim, hidden}, in_h, rng);
      add_bf16(w, p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden}, in_h, rng);
      add_bf16(w, p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden}, in_h, rng);
      add_bf16(w, p + "self_attn.o_proj.weight", {hidden, heads * head_dim}, in_h, rng);
      add_bf16(w, p + "mlp.gate_proj.weight", {inter, hidden}, in_h, rng);
      add_bf16(w, p + "mlp.up_proj.weight", {inter, hidden}, in_h, rng);
      add_bf16(w, p + "mlp.down_proj.weight", {hidden, inter}, in_i, rng);
      add_bf16(w, p + "input_layernorm.weight", {hidden}, 0, rng, true);
      add_bf16(w, p + "post_attention_layernorm.weight", {hidden}, 0, rng, true);
    }
    const auto bytes = w.serialize();
    const SafetensorsFile parsed(shard, std::vector<std::byte>(bytes));
    for (const auto& t : parsed.tensors()) map[t.name] = shard, total += t.data.size();
    write_file_atomically(dir / shard, bytes);
  }
  const nlohmann::ordered_json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", hidden}, {"intermediate_size", inter},
      {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"num_hidden_layers", layers}, {"head_dim", head_dim},
      {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0}, {"vocab_size", vocab}, {"tie_word_embeddings", true},
      {"torch_dtype", "bfloat16"}};
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  std::ofstream(dir / "model.safetensors.index.json") << nlohmann::ordered_json{{"metadata", {{"total_size", total}}}, {"weight_map", map}}.dump(2) << "\n";
  std::printf("wrote %s: %lld layers, %.2f GB of bf16 weights (random, not a trained model)\n", dir.c_str(), static_cast<long long>(layers),
              gigabytes(total));
  return 0;
}

int run(const fs::path& dir, const fs::path& out, int iters, Index nsamples, Index seqlen) {
  const auto start = std::chrono::steady_clock::now();
  const HfModelSource source(dir);
  const LlamaConfig& c = source.config();
  ModelQuantOptions options;
  options.spec = {4, 128, Asymmetric};
  options.nsamples = nsamples;
  options.seqlen = seqlen;
  options.tune.iters = iters;
  options.tune.batch_size = std::min<Index>(nsamples, 8);
  std::vector<TokenSequence> samples(static_cast<std::size_t>(nsamples));
  Random rng{42};
  for (auto& s : samples)
    for (Index t = 0; t < seqlen; ++t) s.push_back(static_cast<std::int32_t>((rng.next(0.5f) + 0.5f) * static_cast<float>(c.vocab - 1)));
  fs::remove_all(out);
  fs::create_directories(out);
  HfShardWriter shards(HfFormat::AutoRound, out, c, options, ExportSource{nullptr, dir});
  quantize_model_streaming(source, samples, options,
                           [&](Index b, const LlamaBlock& block, const LayerResults<>& results) { shards.add_block(b, block, results); });
  shards.finish(source);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::int64_t params = c.vocab * c.hidden + c.hidden;
  for (Linear l : all_linears) {
    const auto [rows, cols] = linear_shape(c, l);
    params += c.layers * rows * cols;
  }
  params += c.layers * 2 * c.hidden;
  std::printf("| %lld | %.2f B | %.1f GB | %.1f GB | %.2f GB | %.0f s | **%.2f GB** |\n", static_cast<long long>(c.layers),
              static_cast<double>(params) / 1e9, gigabytes(static_cast<std::uintmax_t>(params) * 4), gigabytes(directory_bytes(dir)),
              gigabytes(directory_bytes(out)), seconds, static_cast<double>(usage.ru_maxrss) * 1024.0 / 1e9);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> a(argv + 1, argv + argc);
    auto arg = [&](std::size_t i, long fallback) { return a.size() > i ? std::stol(a[i]) : fallback; };
    if (a.size() >= 3 && a[0] == "make")
      return make(a[1], std::stol(a[2]), arg(3, 3072), arg(4, 8192), arg(5, 24), arg(6, 8), arg(7, 128256));
    if (a.size() >= 3 && a[0] == "run")
      return run(a[1], a[2], static_cast<int>(arg(3, 1)), arg(4, 2), arg(5, 32));
    std::fprintf(stderr, "usage: %s make DIR LAYERS [HIDDEN INTERMEDIATE HEADS KV_HEADS VOCAB] | run DIR OUT [ITERS NSAMPLES SEQLEN]\n", argv[0]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
