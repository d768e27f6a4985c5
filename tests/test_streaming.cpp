// Streaming quantization (quantize_model_streaming over a GgufModelSource, HfShardWriter as the
// sink) against the in-memory path (load_llama_gguf, quantize_model, export_hf_checkpoint) on
// the real model (its first 6 blocks, test_assets::short_model): the same tensors byte for byte,
// shards of whole blocks, an index that lists every tensor, and a directory that loads.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "support/assets.hpp"

namespace test_streaming {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("autoround-test-streaming-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
}  // namespace

TEST_CASE("GgufModelSource: a block and embedding rows as load_llama_gguf reads them") {
  const GgufModelSource source(test_assets::short_model());
  const LlamaModel model = load_llama_gguf(test_assets::short_model());
  const LlamaBlock block = source.block(4);
  for (Linear l : all_linears) CHECK(block[l] == model.blocks[4][l]);
  CHECK(block.attn_norm == model.blocks[4].attn_norm);
  const std::vector<std::int32_t> tokens{0, 5, 49151, 5, 1234};
  const RowMatrix rows = source.embedding_rows(tokens);
  for (std::size_t i = 0; i < tokens.size(); ++i) CHECK(rows.row(static_cast<Index>(i)) == model.embedding.row(tokens[i]));
  CHECK_THROWS_WITH(source.embedding_rows(std::vector<std::int32_t>{49152}), doctest::Contains("outside the vocabulary"));
  CHECK_THROWS_WITH(source.block(6), doctest::Contains("no block 6"));
  // the cut model's blocks are the whole model's (scripts/make_short_model.py copies their bytes)
  const LlamaBlock whole = GgufModelSource(test_assets::model()).block(4);
  for (Linear l : all_linears) CHECK(block[l] == whole[l]);
  CHECK(block.ffn_norm == whole.ffn_norm);
}

TEST_CASE("quantize_model_streaming + HfShardWriter write what quantize_model + export_hf_checkpoint write") {
  const auto calibration = read_token_file(test_assets::calibration_tokens());
  ModelQuantOptions options;
  options.spec = {4, 128, Asymmetric};
  options.nsamples = 4;
  options.seqlen = 32;
  options.tune.iters = 3;
  options.tune.batch_size = 2;
  options.tune.clip_init = ClipInit::WeightedSearch;
  options.overrides.push_back({"layers\\.2\\.mlp\\.down_proj", QuantSpec{2, 64, Asymmetric}});  // mixed precision
  const std::vector<TokenSequence> samples = consecutive_windows(calibration, options.nsamples, options.seqlen);

  const fs::path whole = fresh_dir("whole"), sharded = fresh_dir("sharded");
  const GgufModelSource source(test_assets::short_model());
  const ExportSource from{&source.file(), {}};
  {
    LlamaModel model = load_llama_gguf(test_assets::short_model());
    const auto results = quantize_model(model, samples, options);
    export_hf_checkpoint(QuantizedLlama<>{model, results, options}, HfFormat::AutoRound, whole, from);
  }
  // shards of at least 3 MB: blocks gathered (this model's blocks pack to ~1.7 MB each)
  HfShardWriter shards(HfFormat::AutoRound, sharded, source.config(), options, from, 3'000'000);
  Index blocks_seen = 0;
  quantize_model_streaming(source, samples, options, [&](Index b, const LlamaBlock& block, const LayerResults<>& results) {
    CHECK(b == blocks_seen++);
    shards.add_block(b, block, results);
  });
  CHECK_FALSE(fs::exists(sharded / "model.safetensors.index.json"));  // not before finish()
  shards.finish(source);  // the embedding read and converted a slice at a time

  const Index layers = source.config().layers;
  std::ifstream in(sharded / "model.safetensors.index.json");
  const nlohmann::json index = nlohmann::json::parse(in);
  std::set<std::string> files;
  for (const auto& [tensor, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  std::set<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(sharded))
    if (e.path().extension() == ".safetensors") on_disk.insert(e.path().filename().string());
  MESSAGE(files.size() << " shards");
  CHECK(files == on_disk);
  CHECK(files.size() > 3);
  CHECK(files.size() <= static_cast<std::size_t>(layers / 2 + 1));
  for (std::size_t k = 0; k < files.size(); ++k) CHECK(files.count(HfShardWriter::shard_name(k, files.size())) == 1);
  const SafetensorsFile reference((whole / "model.safetensors").string());
  const SafetensorsCheckpoint streamed(sharded);
  REQUIRE(index["weight_map"].size() == reference.tensors().size());
  std::uint64_t total = 0;
  for (const SafetensorsTensor& t : reference.tensors()) {
    CAPTURE(t.name);
    REQUIRE(streamed.contains(t.name));
    const SafetensorsTensor& s = streamed.tensor(t.name);
    CHECK(s.dtype == t.dtype);
    CHECK(s.shape == t.shape);
    CHECK(std::equal(s.data.begin(), s.data.end(), t.data.begin(), t.data.end()));
    total += t.data.size();
  }
  CHECK(index["metadata"]["total_size"].get<std::uint64_t>() == total);
  // a block never spans two shards; the embedding is in the last
  for (Index k = 0; k < layers; ++k) {
    const std::string p = "model.layers." + std::to_string(k) + ".";
    CHECK(index["weight_map"][p + "self_attn.q_proj.qweight"] == index["weight_map"][p + "mlp.down_proj.scales"]);
  }
  CHECK(index["weight_map"]["model.embed_tokens.weight"] == HfShardWriter::shard_name(files.size() - 1, files.size()));
  for (const char* file : {"config.json", "quantization_config.json", "tokenizer.json"}) {
    std::ifstream a(whole / file), b(sharded / file);
    CHECK(nlohmann::json::parse(a) == nlohmann::json::parse(b));
  }
  // the directory loads (our reader, through the index) and computes as the one-file checkpoint
  const LlamaModel a = load_llama_hf(whole), b = load_llama_hf(sharded);
  for (Index k : {Index{0}, Index{2}, layers - 1})
    for (Linear l : all_linears) CHECK(a.blocks[static_cast<std::size_t>(k)][l] == b.blocks[static_cast<std::size_t>(k)][l]);
  const HfModelSource hf(sharded);
  const std::vector<std::int32_t> tokens{3, 17, 3};
  const RowMatrix rows = hf.embedding_rows(tokens);
  for (std::size_t i = 0; i < tokens.size(); ++i) CHECK(rows.row(static_cast<Index>(i)) == b.embedding.row(tokens[i]));
  fs::remove_all(whole);
  fs::remove_all(sharded);
}

TEST_CASE("quantize_model_streaming + GgufBlockWriter write the file quantize_model + export_gguf_model write") {
  // gguf:q4_k_m: k-quant layers (DynamicDoubleQuantizer) and fallback types, each tuned for its type
  const auto calibration = read_token_file(test_assets::calibration_tokens());
  const GgufModelSource source(test_assets::short_model());
  const GgufScheme scheme = gguf_scheme("q4_k_m");
  ModelQuantOptions options;
  options.nsamples = 2;
  options.seqlen = 32;
  options.tune.iters = 2;
  options.tune.batch_size = 2;
  options.overrides = gguf_tuning_overrides(scheme, source.config());
  const std::vector<TokenSequence> samples = consecutive_windows(calibration, options.nsamples, options.seqlen);
  const fs::path dir = fresh_dir("gguf");
  using DQ = DynamicDoubleQuantizer;
  std::vector<GgufTensorChoice> whole_choices;
  {
    LlamaModel model = load_llama_gguf(test_assets::short_model());
    const auto results = quantize_model<SignSGD<>, Cpu, DQ>(model, samples, options);
    whole_choices = export_gguf_model(QuantizedLlama<DQ>{model, results, options}, source.file(), scheme, dir / "whole.gguf");
  }
  GgufBlockWriter<DQ> writer(source.file(), scheme, source.config(), dir / "streamed.gguf");
  quantize_model_streaming<SignSGD<>, Cpu, DQ>(source, samples, options,
                                               [&](Index b, const LlamaBlock&, const LayerResults<DQ>& results) { writer.add_block(b, results); });
  CHECK(fs::exists(dir / "streamed.gguf.tmp"));
  CHECK_FALSE(fs::exists(dir / "streamed.gguf"));
  const auto choices = writer.finish();
  CHECK_FALSE(fs::exists(dir / "streamed.gguf.tmp"));
  REQUIRE(choices.size() == whole_choices.size());
  int tuned = 0;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    CHECK(choices[i].type == whole_choices[i].type);
    CHECK(choices[i].tuned == whole_choices[i].tuned);
    tuned += choices[i].tuned;
  }
  CHECK(tuned == 7 * source.config().layers);
  std::ifstream a(dir / "whole.gguf", std::ios::binary), b(dir / "streamed.gguf", std::ios::binary);
  const std::string x((std::istreambuf_iterator<char>(a)), {}), y((std::istreambuf_iterator<char>(b)), {});
  CHECK(x.size() == y.size());
  CHECK(x == y);
  fs::remove_all(dir);
}

TEST_CASE("GgufBlockWriter: an unfinished file leaves nothing; blocks out of range or twice are refused") {
  const GgufModelSource source(test_assets::short_model());
  const fs::path dir = fresh_dir("gguf-errors");
  {
    GgufBlockWriter<> writer(source.file(), gguf_scheme("q8_0"), source.config(), dir / "x.gguf");
    writer.add_block(0, LayerResults<>{});
    CHECK_THROWS_WITH(writer.add_block(0, LayerResults<>{}), doctest::Contains("block 0 given twice"));
    CHECK_THROWS_WITH(writer.finish(), doctest::Contains("blk.1."));  // block 1 never came
  }
  CHECK(fs::is_empty(dir));
  fs::remove_all(dir);
}

// A host backend that lets quantize_model_streaming read and write beside the tuning, as it does
// for the Cuda policy: the overlapping loop, testable without a GPU.
struct ThreadedCpu : Cpu {};
}  // namespace test_streaming
template <>
inline constexpr bool autoround::detail::overlap_host_work<test_streaming::ThreadedCpu> = true;
namespace test_streaming {

TEST_CASE("quantize_model_streaming beside the tuning (device backends): the same results, the sink in order, errors passed on") {
  const auto calibration = read_token_file(test_assets::calibration_tokens());
  ModelQuantOptions options;
  options.spec = {4, 128, Asymmetric};
  options.nsamples = 1;  // small: the loop is under test, every block of the real model goes through it twice
  options.seqlen = 8;
  options.tune.iters = 1;
  options.tune.batch_size = 1;
  const std::vector<TokenSequence> samples = consecutive_windows(calibration, options.nsamples, options.seqlen);
  const GgufModelSource source(test_assets::short_model());
  const auto collect = [&](auto backend, std::vector<std::thread::id>& threads) {
    std::vector<std::vector<std::uint8_t>> codes;
    quantize_model_streaming<SignSGD<>, decltype(backend)>(
        source, samples, options,
        [&](Index b, const LlamaBlock& block, const LayerResults<>& results) {
          REQUIRE(b == static_cast<Index>(codes.size()));  // in block order, one call at a time
          threads.push_back(std::this_thread::get_id());
          codes.push_back(results[static_cast<std::size_t>(Linear::Down)]->codes);
          CHECK(block[Linear::Down].size() == 0);  // released: the results hold it
          CHECK(block.ffn_norm.size() == source.config().hidden);
        },
        {}, {}, SignSGD<>{}, backend);
    return codes;
  };
  std::vector<std::thread::id> plain_threads, threaded_threads;
  const auto plain = collect(Cpu{}, plain_threads);
  const auto threaded = collect(ThreadedCpu{}, threaded_threads);
  CHECK(plain.size() == static_cast<std::size_t>(source.config().layers));
  CHECK(threaded == plain);
  // the plain loop calls the sink on the caller's thread, the overlapping one never does
  CHECK(std::count(plain_threads.begin(), plain_threads.end(), std::this_thread::get_id()) == static_cast<long>(plain_threads.size()));
  CHECK(std::count(threaded_threads.begin(), threaded_threads.end(), std::this_thread::get_id()) == 0);

  // a sink that fails at block 3: the call throws its error, and no block after 4 is tuned
  Index last_tuned = -1;
  const auto failing_run = [&] {
    quantize_model_streaming<SignSGD<>, ThreadedCpu>(
        source, samples, options,
        [&](Index b, const LlamaBlock&, const LayerResults<>&) {
          if (b == 3) throw Error("disk full at block 3");
        },
        [&](const BlockReport& r, Index) { last_tuned = r.block; }, {}, SignSGD<>{}, ThreadedCpu{});
  };
  CHECK_THROWS_WITH_AS(failing_run(), doctest::Contains("disk full at block 3"), Error);
  CHECK(last_tuned == 4);  // block 4 tuned while block 3 was written; the error seen before block 5
}
}  // namespace test_streaming
