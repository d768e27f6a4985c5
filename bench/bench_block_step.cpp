// One block-wise AutoRound step on the CPU against the GEMMs it cannot avoid, at a block shape
// (default: the 135M asset's block, hidden 576, intermediate 1536, 9 heads / 3 KV heads,
// 8 samples × 128 tokens, every linear layer W4G128 asym):
//   step         BlockTuningRun::step as the library runs it: the minibatch stacked, every
//                linear layer one GEMM over all its rows (weights packed once per step)
//   per-sample   the same step with the block run one sample at a time (what the library did
//                before: every GEMM of 128 rows re-packs its weight), same qdq and updates
//   gemms        only the step's GEMMs at the step's shapes: 7 forward, 7 weight gradients and
//                the 4 input gradients the backward needs (o, gate, up, down)
// and prints step / gemms (the overhead the step adds to its GEMMs) and the steps per second of
// both steps. Random weights and inputs: shape-only timing (accuracy is measured elsewhere).
//
//   bench_block_step [hidden=576 intermediate=1536 heads=9 kv_heads=3 seqlen=128 batch=8 rounds=7]
//
// Each figure is the median of `rounds` interleaved rounds of >= 0.5 s (a shared 2-core machine's
// speed drifts by 15% from minute to minute).
//
// It compiles against the library before batching too (a git worktree of fdb49a5):
// docs/speed.md compares both binaries' steps.
#include <autoround/autoround.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <random>
#include <vector>

using namespace autoround;

namespace {

using Q = IntQuantizer<4, 128, Asymmetric>;
using Run = BlockTuningRun<Q, SignSGD<>, Cpu>;

// Each function's median over `rounds` rounds, the functions taking turns within a round (so a
// slower or faster spell of a shared machine falls on all of them); a round times one function
// for at least `budget` seconds after a warm-up call.
std::vector<double> interleaved_medians(const std::vector<std::function<void()>>& fs, int rounds, double budget) {
  std::vector<std::vector<double>> times(fs.size());
  for (int round = 0; round < rounds; ++round)
    for (std::size_t i = 0; i < fs.size(); ++i) {
      fs[i]();
      int repeats = 0;
      const auto start = std::chrono::steady_clock::now();
      double elapsed = 0;
      do {
        fs[i]();
        ++repeats;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      } while (elapsed < budget);
      times[i].push_back(elapsed / repeats);
    }
  std::vector<double> medians;
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

LlamaBlock random_block(const LlamaConfig& c, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  LlamaBlock b;
  for (Linear l : all_linears) {
    const auto [out, in] = linear_shape(c, l);
    b[l].resize(out, in);
    for (Index i = 0; i < b[l].size(); ++i) b[l].data()[i] = normal(rng) / std::sqrt(static_cast<float>(in));
  }
  b.attn_norm = Eigen::VectorXf::Ones(c.hidden);
  b.ffn_norm = Eigen::VectorXf::Ones(c.hidden);
  return b;
}

// The step before batching, from the library's public parts: qdq every layer, the block forward
// and backward one sample at a time, the straight-through backward and SignSGD on every layer.
class PerSampleStep {
 public:
  PerSampleStep(const LlamaBlock& block, const LlamaConfig& c, std::span<const RowMatrix> inputs,
                std::span<const RowMatrix> targets, Index batch)
      : block_(block), config_(c), inputs_(inputs), targets_(targets), sampler_(static_cast<Index>(inputs.size()), batch, 42) {
    for (Linear l : all_linears) {
      const auto i = static_cast<std::size_t>(l);
      tunable_[i].emplace(Q{}, view(block[l]));
      qweight_[i].resize(block[l].rows(), block[l].cols());
      state_[i] = optimizer_.make_state(tunable_[i]->rounding.size());
    }
  }

  double step() {
    BlockWeights w = BlockWeights::of(block_);
    std::array<RowMatrix, 7> grads;
    for (Linear l : all_linears) {
      const auto i = static_cast<std::size_t>(l);
      tunable_[i]->forward(backend_, mutable_view(qweight_[i]));
      w.linear[i] = &qweight_[i];
      grads[i] = RowMatrix::Zero(block_[l].rows(), block_[l].cols());
    }
    double loss = 0;
    BlockCache cache;
    for (Index s : sampler_.next_batch()) {
      RowMatrix out = inputs_[static_cast<std::size_t>(s)];
      block_forward(w, config_, out, &cache);
      out -= targets_[static_cast<std::size_t>(s)];
      loss += static_cast<double>(out.squaredNorm());
      out *= 1e-3f;
      block_backward(w, config_, cache, out, grads);
    }
    for (std::size_t i = 0; i < 7; ++i) {
      tunable_[i]->backward(backend_, mutable_view(grads[i]), grad_min_, grad_max_);
      optimizer_.update(tunable_[i]->rounding, std::span<const float>(grads[i].data(), static_cast<std::size_t>(grads[i].size())),
                        1e-3f, state_[i]);
      optimizer_.update(tunable_[i]->min_scale, grad_min_, 1e-3f, state_[i]);
      optimizer_.update(tunable_[i]->max_scale, grad_max_, 1e-3f, state_[i]);
    }
    return loss;
  }

 private:
  const LlamaBlock& block_;
  LlamaConfig config_;
  std::span<const RowMatrix> inputs_, targets_;
  IndexSampler sampler_;
  Cpu backend_;
  SignSGD<> optimizer_;
  std::array<std::optional<TunableWeight<Q>>, 7> tunable_;
  std::array<RowMatrix, 7> qweight_;
  std::array<SignSGD<>::State, 7> state_;
  std::vector<float> grad_min_, grad_max_;
};

}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, long fallback) { return argc > i ? std::atol(argv[i]) : fallback; };
  LlamaConfig c;
  c.hidden = arg(1, 576), c.intermediate = arg(2, 1536), c.heads = arg(3, 9), c.kv_heads = arg(4, 3);
  c.head_dim = c.hidden / c.heads;
  const Index seqlen = arg(5, 128), batch = arg(6, 8);
  const int rounds = static_cast<int>(arg(7, 7));
  const double budget = 0.5;
  std::mt19937 rng(7);
  const LlamaBlock block = random_block(c, rng);
  std::normal_distribution<float> normal;
  std::vector<RowMatrix> inputs(static_cast<std::size_t>(batch)), targets;
  for (RowMatrix& x : inputs) {
    x.resize(seqlen, c.hidden);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  }
  targets = inputs;
  for (RowMatrix& t : targets) block_forward(block, c, t);

  TuneOptions options;
  options.iters = 1 << 30;  // the learning rate stays away from 0 whatever the number of timed steps
  options.batch_size = batch;
  Run::LayerQuantizers quantizers(all_linears.size());
  for (auto& q : quantizers) q = Q{};
  Run run(options, quantizers, SignSGD<>{}, Cpu{}, block, c, std::span<const RowMatrix>(inputs), "bench");
  PerSampleStep per_sample(block, c, inputs, targets, batch);

  // the step's GEMMs alone, at its shapes, with Eigen as the step calls it
  const Index rows = seqlen * batch;
  std::array<RowMatrix, 7> x, y, dy, dw;
  std::array<RowMatrix, 4> dx;
  for (Linear l : all_linears) {
    const auto i = static_cast<std::size_t>(l);
    const auto [out, in] = linear_shape(c, l);
    x[i] = RowMatrix::Random(rows, in);
    dy[i] = RowMatrix::Random(rows, out);
    dw[i].resize(out, in);
  }
  double gemm_flops = 0;
  for (Linear l : all_linears) {
    const auto [out, in] = linear_shape(c, l);
    const bool input_grad = l == Linear::Output || l == Linear::Gate || l == Linear::Up || l == Linear::Down;
    gemm_flops += 2.0 * static_cast<double>(rows * out * in) * (input_grad ? 3 : 2);
  }
  const auto gemms = [&] {
    for (Linear l : all_linears) {
      const auto i = static_cast<std::size_t>(l);
      y[i].noalias() = x[i] * block[l].transpose();
      dw[i].noalias() = dy[i].transpose() * x[i];
    }
    const Linear with_input_grad[4] = {Linear::Output, Linear::Gate, Linear::Up, Linear::Down};
    for (std::size_t j = 0; j < 4; ++j) dx[j].noalias() = dy[static_cast<std::size_t>(with_input_grad[j])] * block[with_input_grad[j]];
  };

  const auto medians = interleaved_medians({[&] { run.step(); }, [&] { per_sample.step(); }, gemms}, rounds, budget);
  const double t_step = medians[0], t_old = medians[1], t_gemm = medians[2];
  std::printf("medians of %d interleaved rounds\n", rounds);
  std::printf("block hidden %ld, intermediate %ld, heads %ld/%ld, %ld samples x %ld tokens, W4G128 asym, %d threads\n",
              static_cast<long>(c.hidden), static_cast<long>(c.intermediate), static_cast<long>(c.heads),
              static_cast<long>(c.kv_heads), static_cast<long>(batch), static_cast<long>(seqlen), Cpu{}.threads());
  std::printf("| | ms | steps/s | GEMM GFLOP/s |\n|---|---|---|---|\n");
  std::printf("| step (batched) | %.1f | %.2f | %.1f |\n", t_step * 1e3, 1 / t_step, gemm_flops / t_step * 1e-9);
  std::printf("| step (per sample, before) | %.1f | %.2f | %.1f |\n", t_old * 1e3, 1 / t_old, gemm_flops / t_old * 1e-9);
  std::printf("| its GEMMs alone | %.1f | | %.1f |\n", t_gemm * 1e3, gemm_flops / t_gemm * 1e-9);
  std::printf("\nstep / its GEMMs: %.3f (goal <= 1.3); per-sample / batched step: %.2fx\n", t_step / t_gemm, t_old / t_step);
}
