#pragma once
// A tuning run's finished blocks on disk, so that a run interrupted anywhere (a signal, kill -9,
// a crash, a lost machine) continues after its last finished block instead of starting over:
// quantize_model_streaming's `checkpoint`, `autoround quantize --resume`.
//
// DIR/run.txt holds the run's fingerprint (every setting its results depend on, as text); a
// directory holding another run's blocks is refused, naming the first line that differs. Each
// finished block is one file, DIR/block-NNNNN.safetensors, written atomically (a kill while it
// is written leaves the blocks before it and a .tmp that is ignored):
//   L.codes (U8, the codes bit-packed at the layer's bit width, little-endian bit order),
//   L.scales (F32), L.zeros (I32), and for double quantization L.mins, L.super_scales,
//   L.super_mins (F32), where L is "layer.I", I the layer's linear slot (model/linear_slots.hpp:
//   a dense block's 0-6 are q, k, v, o, gate, up, down);
//   random (U32 [625]): the sampler's random state after the block (PythonRandom::state);
//   metadata: per layer its spec and tuning statistics, the block's slot count ("slots") and its
//   report, numbers as %.17g text (they read back to the same doubles).
// The activation streams are not saved: a resumed run replays them through the kept blocks
// (BlockByBlock::replay: the same forwards the tuning run made, two per block). Disk: about the
// quantized model's size (a W4 block of Llama-3-8B: 109 MB of codes).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../format/safetensors.hpp"
#include "model_quantizer.hpp"

namespace autoround {

namespace detail {

inline std::string exact_text(double v) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.17g", v);
  return buffer;
}

/// codes (each < 2^bits) packed into bytes, `bits` bits each, lowest bits first.
inline std::vector<std::uint8_t> pack_codes(const std::vector<std::uint8_t>& codes, int bits) {
  std::vector<std::uint8_t> out((codes.size() * static_cast<std::size_t>(bits) + 7) / 8, 0);
  std::uint64_t pending = 0;
  int filled = 0;
  std::size_t o = 0;
  for (const std::uint8_t c : codes) {
    pending |= static_cast<std::uint64_t>(c) << filled;
    for (filled += bits; filled >= 8; filled -= 8, pending >>= 8) out[o++] = static_cast<std::uint8_t>(pending);
  }
  if (filled > 0) out[o] = static_cast<std::uint8_t>(pending);
  return out;
}
inline std::vector<std::uint8_t> unpack_codes(std::span<const std::byte> packed, std::size_t count, int bits) {
  std::vector<std::uint8_t> out(count);
  const std::uint64_t mask = (1u << bits) - 1;
  std::uint64_t pending = 0;
  int filled = 0;
  std::size_t i = 0;
  for (std::uint8_t& c : out) {
    for (; filled < bits; filled += 8) pending |= static_cast<std::uint64_t>(std::to_integer<unsigned>(packed[i++])) << filled;
    c = static_cast<std::uint8_t>(pending & mask);
    pending >>= bits;
    filled -= bits;
  }
  return out;
}

}  // namespace detail

template <WeightQuantizer Q = DynamicIntQuantizer>
class RunCheckpoint {
 public:
  /// Opens (or creates) `dir` for a run of this `fingerprint`; `blocks` is the model's number.
  RunCheckpoint(std::filesystem::path dir, const std::string& fingerprint, Index blocks) : dir_(std::move(dir)), blocks_(blocks) {
    namespace fs = std::filesystem;
    fs::create_directories(dir_);
    const fs::path manifest = dir_ / "run.txt";
    const bool existing = fs::exists(manifest);
    if (existing) {
      std::ifstream in(manifest, std::ios::binary);
      const std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (kept != fingerprint) {
        std::istringstream a(kept), b(fingerprint);
        std::string x, y;
        while (std::getline(a, x) && std::getline(b, y) && x == y) {
        }
        throw Error(dir_.string() + ": holds the blocks of another run (it had \"" + x + "\", this one has \"" + y +
                    "\"); remove it, or run with the settings it was made with");
      }
    }
    lock_ = std::make_shared<DirectoryLock>(dir_ / "lock");
    if (!existing) write_file_atomically(manifest, std::as_bytes(std::span<const char>(fingerprint.data(), fingerprint.size())));
    for (Index b = 0; b < blocks_ && std::filesystem::exists(path(b)); ++b) finished_ = b + 1;
  }

  const std::filesystem::path& dir() const { return dir_; }
  /// Blocks 0 .. finished() - 1 are kept (the first missing file ends the count).
  Index finished() const { return finished_; }

  void save(Index b, const FinishedBlock<Q>& block) const {
    SafetensorsWriter writer;
    writer.set_metadata("slots", std::to_string(block.results.size()));
    for (std::size_t i = 0; i < block.results.size(); ++i) {
      const auto& q = block.results[i];
      if (!q) continue;
      const std::string name = "layer." + std::to_string(i);
      const QuantSpec spec = q->quantizer.spec();
      const auto rows = static_cast<std::int64_t>(q->rows()), cols = static_cast<std::int64_t>(q->cols());
      const std::vector<std::uint8_t> packed = detail::pack_codes(q->codes, spec.bits);
      writer.add(name + ".codes", Dtype::U8, {static_cast<std::int64_t>(packed.size())}, std::span<const std::uint8_t>(packed));
      auto floats = [&](const std::string& what, const std::vector<float>& v) {
        if (!v.empty()) writer.add(name + "." + what, Dtype::F32, {static_cast<std::int64_t>(v.size())}, std::span<const float>(v));
      };
      floats("scales", q->scales);
      floats("mins", q->mins);
      floats("super_scales", q->super_scales);
      floats("super_mins", q->super_mins);
      writer.add(name + ".zeros", Dtype::I32, {static_cast<std::int64_t>(q->zeros.size())}, std::span<const std::int32_t>(q->zeros));
      writer.set_metadata(name, std::to_string(rows) + " " + std::to_string(cols) + " " + std::to_string(spec.bits) + " " +
                                    std::to_string(spec.group_size) + " " + std::to_string(spec.symmetry == Symmetric) + " " +
                                    std::to_string(spec.super_group_size) + " " + std::to_string(spec.super_bits) + " " +
                                    stats_text(q->stats));
      if (spec.data_type != DataType::Int || q->input_absmax != 0.0f) {  // FloatQuantizer: its format and global scale
        float global_scale = 0.0f;
        if constexpr (requires { q->quantizer.global_scale(); }) global_scale = q->quantizer.global_scale();
        writer.set_metadata(name + ".float", std::to_string(static_cast<int>(spec.data_type)) + " " + detail::exact_text(global_scale) +
                                                 " " + detail::exact_text(q->input_absmax) + " " + std::to_string(spec.act_bits) +
                                                 " " + std::to_string(static_cast<int>(spec.act_rceil)) + " " +
                                                 std::to_string(spec.group_rows));
      }
    }
    const BlockReport& r = block.report;
    writer.set_metadata("report", std::to_string(r.block) + " " + std::to_string(r.quantized_layers) + " " + detail::exact_text(r.seconds) +
                                      " " + detail::exact_text(r.setup_seconds) + " " + detail::exact_text(r.steps_seconds) + " " +
                                      stats_text(r.stats) + " " + std::to_string(r.experts) + " " + std::to_string(r.experts_unreached) +
                                      " " + std::to_string(r.fewest_expert_tokens));
    writer.add("random", Dtype::U32, {static_cast<std::int64_t>(block.random.size())}, std::span<const std::uint32_t>(block.random));
    writer.write(path(b));
  }

  FinishedBlock<Q> load(Index b) const {
    const std::string file = path(b).string();
    const SafetensorsFile f(file);
    auto meta = [&](const std::string& key) {
      const auto it = f.metadata().find(key);
      if (it == f.metadata().end()) throw Error(file + ": no '" + key + "' in its metadata");
      return std::istringstream(it->second);
    };
    auto read_stats = [&](std::istringstream& in, TuningStats& s) { in >> s.steps_run >> s.rtn_loss >> s.best_loss >> s.best_step >> s.seconds; };
    FinishedBlock<Q> out;
    std::size_t slots = 0;
    auto slot_count = meta("slots");
    slot_count >> slots;
    if (!slot_count || slots > (std::size_t{1} << 20)) throw Error(file + ": unreadable slot count");
    out.results.resize(slots);
    for (std::size_t i = 0; i < slots; ++i) {
      const std::string name = "layer." + std::to_string(i);
      if (!f.metadata().count(name)) continue;
      auto in = meta(name);
      Index rows = 0, cols = 0;
      QuantSpec spec;
      int symmetric = 0;
      in >> rows >> cols >> spec.bits >> spec.group_size >> symmetric >> spec.super_group_size >> spec.super_bits;
      spec.symmetry = symmetric ? Symmetric : Asymmetric;
      TuningStats stats;
      read_stats(in, stats);
      if (!in || rows <= 0 || cols <= 0 || spec.bits < 1 || spec.bits > 8) throw Error(file + ": layer " + name + ": unreadable metadata");
      float global_scale = 0.0f, input_absmax = 0.0f;
      if (f.metadata().count(name + ".float")) {
        auto fl = meta(name + ".float");
        int data_type = 0;
        int rceil = 0;
        fl >> data_type >> global_scale >> input_absmax >> spec.act_bits >> rceil;
        if (!fl || data_type < 0 || data_type > 3 || (spec.act_bits != 16 && (spec.act_bits < 1 || spec.act_bits > 8)) || rceil < 0 || rceil > 1)
          throw Error(file + ": layer " + name + ": unreadable format metadata");
        spec.act_rceil = rceil == 1;
        spec.data_type = static_cast<DataType>(data_type);
        int group_rows = 1;  // absent in a checkpoint written before FP8_BLOCK
        if (fl >> group_rows) spec.group_rows = group_rows;
        if (spec.group_rows < 1) throw Error(file + ": layer " + name + ": unreadable format metadata");
      }
      QuantizedWeight<Q> q{Q(spec), GroupLayout(rows, cols, spec.group_size, spec.group_rows), {}, {}, {}, stats, {}, {}, {}};
      q.input_absmax = input_absmax;
      if constexpr (requires { q.quantizer.with_global_scale(1.0f); })
        if (global_scale != 0.0f) q.quantizer = q.quantizer.with_global_scale(global_scale);
      const auto count = static_cast<std::size_t>(rows * cols);
      const SafetensorsTensor& codes = f.tensor(name + ".codes");
      if (codes.dtype != Dtype::U8 || codes.data.size() != (count * static_cast<std::size_t>(spec.bits) + 7) / 8)
        throw Error(file + ": " + name + ".codes does not hold " + std::to_string(count) + " codes");
      q.codes = detail::unpack_codes(codes.data, count, spec.bits);
      auto floats = [&](const std::string& what) {
        if (!f.find(name + "." + what)) return std::vector<float>();
        const auto v = f.view_as<float>(name + "." + what, Dtype::F32);
        return std::vector<float>(v.begin(), v.end());
      };
      q.scales = floats("scales");
      q.mins = floats("mins");
      q.super_scales = floats("super_scales");
      q.super_mins = floats("super_mins");
      const auto zeros = f.view_as<std::int32_t>(name + ".zeros", Dtype::I32);
      q.zeros.assign(zeros.begin(), zeros.end());
      const auto groups = static_cast<std::size_t>(q.layout.group_count());
      if (q.scales.size() != groups || q.zeros.size() != groups) throw Error(file + ": layer " + name + ": scales or zeros of the wrong size");
      out.results[i] = std::move(q);
    }
    auto report = meta("report");
    BlockReport& r = out.report;
    report >> r.block >> r.quantized_layers >> r.seconds >> r.setup_seconds >> r.steps_seconds;
    read_stats(report, r.stats);
    report >> r.experts >> r.experts_unreached >> r.fewest_expert_tokens;
    if (!report || r.block != b) throw Error(file + ": unreadable report, or the report of another block");
    const auto random = f.view_as<std::uint32_t>("random", Dtype::U32);
    if (random.size() != out.random.size()) throw Error(file + ": the random state has " + std::to_string(random.size()) + " words");
    std::copy(random.begin(), random.end(), out.random.begin());
    return out;
  }

 private:
  std::filesystem::path path(Index b) const {
    char name[40];
    std::snprintf(name, sizeof name, "block-%05ld.safetensors", static_cast<long>(b));
    return dir_ / name;
  }
  static std::string stats_text(const TuningStats& s) {
    return std::to_string(s.steps_run) + " " + detail::exact_text(s.rtn_loss) + " " + detail::exact_text(s.best_loss) + " " +
           std::to_string(s.best_step) + " " + detail::exact_text(s.seconds);
  }

  // Two runs writing one checkpoint would each replay the other's blocks and delete them when
  // done: the directory is locked (flock, released when the process ends, however it ends).
  class DirectoryLock {
   public:
    explicit DirectoryLock(const std::filesystem::path& path) {
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd_ < 0) throw Error(path.string() + ": cannot open: " + std::strerror(errno));
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd_);
        throw Error(path.parent_path().string() + ": another run is using it (wait for it, or stop it)");
      }
    }
    DirectoryLock(const DirectoryLock&) = delete;
    DirectoryLock& operator=(const DirectoryLock&) = delete;
    ~DirectoryLock() { ::close(fd_); }

   private:
    int fd_ = -1;
  };

  std::filesystem::path dir_;
  std::shared_ptr<DirectoryLock> lock_;
  Index blocks_ = 0, finished_ = 0;
};

}  // namespace autoround
