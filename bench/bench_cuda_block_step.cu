// Block-wise AutoRound on the GPU for a LLaMA-3-8B-shaped decoder block (hidden 4096,
// intermediate 14336, 32 heads, 8 KV heads, head_dim 128; every linear layer W4G128 asym):
//  (a) one tuning step on a minibatch of 8 samples × 2048 tokens (the reference's batch), as the
//      GEMM FLOPs it executes per second, against the GPU's bf16 (and float32) GEMM rate
//      measured in the same run on one large cuBLAS GEMM;
//  (a') the same step split by a BlockMemoryPlan (micro-batches, attention chunks), bf16 GEMMs:
//      its time against the whole step's, and its workspace (DeviceMemory's peak, the estimate);
//  (b) whole-block tuning at the reference's default settings (200 steps, 128 samples × 2048
//      tokens, batch 8): setup (upload, full-precision targets), the steps and the encode.
// Random weights and inputs: shape-only timing (the work per step does not depend on values).
//
//   bench_cuda_block_step [seqlen=2048] [samples=128] [fp32-whole-block=0]
//   PROFILE_STEP=1 bench_cuda_block_step: only one warm bf16 step, between cudaProfilerStart and
//   cudaProfilerStop, for `ncu --profile-from-start off` (each kernel's time: scripts/ncu_kernel_table.py)
#include <autoround/backend/cuda/cuda_runs.cuh>

#include <cuda_profiler_api.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>

using namespace autoround;

namespace {

double seconds(const std::function<void()>& f) {
  cuda::check(cudaDeviceSynchronize(), "sync");
  const auto t0 = std::chrono::steady_clock::now();
  f();
  cuda::check(cudaDeviceSynchronize(), "timing");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A cheap deterministic generator (sum of two uniforms): the values do not matter here.
struct Noise {
  std::uint64_t state;
  float operator()() {
    auto next = [&] {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      return static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;
    };
    return 2.45f * (next() + next());  // mean 0, variance about 1
  }
};

// the run's own copies of its inputs and targets (BlockCalibration: float32 on the device)
std::size_t calibration_copy_bytes(long samples, long values) {
  return cuda::ActivationStream::bytes(samples, values, StreamDtype::Float32);
}

}  // namespace

int main(int argc, char** argv) {
  if (cuda::device_count() == 0) {
    std::printf("bench_cuda_block_step: no CUDA device\n");
    return 77;
  }
  const Index seqlen = argc > 1 ? std::atol(argv[1]) : 2048, samples = argc > 2 ? std::atol(argv[2]) : 128;
  const bool fp32_whole = argc > 3 && std::atoi(argv[3]) != 0;
  LlamaConfig c;
  c.hidden = 4096, c.intermediate = 14336, c.heads = 32, c.kv_heads = 8, c.head_dim = 128, c.rope_theta = 500000.0f;
  Noise noise{0x9e3779b97f4a7c15ull};
  LlamaBlock block;
  double params = 0, params_no_qkv = 0;
  for (Linear l : all_linears) {
    const auto [out, in] = linear_shape(c, l);
    block[l].resize(out, in);
    for (Index i = 0; i < block[l].size(); ++i) block[l].data()[i] = 0.02f * noise();
    params += static_cast<double>(out * in);
    if (l != Linear::Query && l != Linear::Key && l != Linear::Value) params_no_qkv += static_cast<double>(out * in);
  }
  block.attn_norm = Eigen::VectorXf::Ones(c.hidden);
  block.ffn_norm = Eigen::VectorXf::Ones(c.hidden);
  std::vector<RowMatrix> inputs(static_cast<std::size_t>(samples), RowMatrix(seqlen, c.hidden));
  for (RowMatrix& x : inputs)
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = noise();
  std::vector<std::optional<DynamicIntQuantizer>> quantizers(all_linears.size());  // per linear slot
  for (auto& q : quantizers) q = DynamicIntQuantizer({4, 128, Asymmetric});

  // FLOPs of the GEMMs one step runs: forward projections, weight gradients of all seven, input
  // gradients of o/gate/up/down (the block input is a constant: none for q/k/v), and per sample
  // and head the six attention products (S = QKᵀ, O = PV; dP, dQ, dK, dV) over the causal tiles'
  // part of the [seqlen, seqlen] square (the run's default tiles; attention_tiles).
  const Index batch = 8;
  const double tokens = static_cast<double>(batch * seqlen);
  const long tile = attention_tile_rows(seqlen);
  const double share = attention_tile_share(seqlen, tile, 0);
  const double flop = 2 * tokens * (2 * params + params_no_qkv) + 12.0 * share * static_cast<double>(seqlen) * static_cast<double>(seqlen) *
                                                                     static_cast<double>(c.head_dim) * static_cast<double>(batch * c.heads);
  std::printf("causal tiles of %ld query rows: %.3f of each attention square\n", tile, share);

  const std::span<const RowMatrix> one_batch(inputs.data(), static_cast<std::size_t>(batch));
  if (const char* profile = std::getenv("PROFILE_STEP"); profile && std::atoi(profile) != 0) {
    TuneOptions o;
    o.iters = 1 << 30;
    BlockTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(o, quantizers, SignSGD<>{}, Cuda{GemmPrecision::BFloat16}, block, c,
                                                             one_batch, "bench");
    run.step();
    run.step();
    cuda::check(cudaDeviceSynchronize(), "sync");
    cuda::check(cudaProfilerStart(), "cudaProfilerStart");
    const double ms = 1e3 * seconds([&] { run.step(); });
    cuda::check(cudaProfilerStop(), "cudaProfilerStop");
    std::printf("profiled step: %.1f ms\n", ms);
    return 0;
  }
  double step[2];
  const char* names[] = {"float32", "bf16 operands, float32 accumulation"};
  for (int p = 0; p < 2; ++p) {
    TuneOptions o;
    o.iters = 1 << 30;  // the learning rate stays away from 0 over the timed steps
    BlockTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(o, quantizers, SignSGD<>{},
                                                             Cuda{p == 0 ? GemmPrecision::Float32 : GemmPrecision::BFloat16}, block, c,
                                                             one_batch, "bench");
    run.step();
    const int repeats = p == 0 ? 3 : 10;
    step[p] = seconds([&] {
                for (int i = 0; i < repeats; ++i) run.step();
              }) / repeats;
  }

  // The GPU's GEMM rate on one large GEMM of the block's largest shape, same run
  double rate[2];
  {
    const long m = batch * seqlen, n = c.intermediate, k = c.hidden;
    cuda::DeviceBuffer<float> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(n * k)), y(static_cast<std::size_t>(m * n));
    cuda::DeviceBuffer<__nv_bfloat16> ab(a.size()), bb(b.size());
    cuda::check(cudaMemset(a.data(), 0, a.size() * 4), "memset");
    cuda::check(cudaMemset(b.data(), 0, b.size() * 4), "memset");
    cuda::check(cudaMemset(ab.data(), 0, ab.size() * 2), "memset");
    cuda::check(cudaMemset(bb.data(), 0, bb.size() * 2), "memset");
    cuda::Blas blas;
    const double gemm_flop = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    blas.gemm<float>(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, y.data(), n);
    rate[0] = gemm_flop * 3 / seconds([&] {
                for (int i = 0; i < 3; ++i) blas.gemm<float>(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, y.data(), n);
              });
    blas.gemm<__nv_bfloat16>(false, true, m, n, k, 1.0f, ab.data(), k, bb.data(), k, 0.0f, y.data(), n);
    rate[1] = gemm_flop * 10 / seconds([&] {
                for (int i = 0; i < 10; ++i)
                  blas.gemm<__nv_bfloat16>(false, true, m, n, k, 1.0f, ab.data(), k, bb.data(), k, 0.0f, y.data(), n);
              });
  }
  std::printf("\n| LLaMA-3-8B block step, 8 x %ld tokens, W4G128 asym | ms | GEMM TFLOP/s | / GPU bf16 GEMM rate | / GPU fp32 GEMM rate |\n",
              seqlen);
  std::printf("|---|---|---|---|---|\n");
  std::printf("| GPU GEMM rate, one %ldx%ldx%ld cuBLAS GEMM, bf16 | | %.1f | 1.00 | |\n", batch * seqlen, c.intermediate, c.hidden,
              rate[1] / 1e12);
  std::printf("| GPU GEMM rate, same GEMM, float32 | | %.1f | | 1.00 |\n", rate[0] / 1e12);
  for (int p = 0; p < 2; ++p)
    std::printf("| BlockTuningRun<..., Cuda> step, %s (%.2f TFLOP of GEMMs) | %.1f | %.1f | %.3f | %.3f |\n", names[p], flop / 1e12,
                step[p] * 1e3, flop / step[p] / 1e12, flop / step[p] / rate[1], flop / step[p] / rate[0]);

  // (a') split steps, bf16 GEMMs
  std::printf("\n| bf16 step split by BlockMemoryPlan {micro-batch, attention pairs, tile rows} | ms | / whole step | peak device memory GiB | estimate (state + inputs + workspace) GiB |\n");
  std::printf("|---|---|---|---|---|\n");
  double whole_ms = 0;
  for (const BlockMemoryPlan plan : {BlockMemoryPlan{}, BlockMemoryPlan{0, 0, seqlen}, BlockMemoryPlan{0, 0, seqlen / 4},
                                     BlockMemoryPlan{0, 0, seqlen / 16}, BlockMemoryPlan{8, 32}, BlockMemoryPlan{4, 32},
                                     BlockMemoryPlan{3, 16}, BlockMemoryPlan{2, 16}, BlockMemoryPlan{1, 8}}) {
    TuneOptions o;
    o.iters = 1 << 30;
    Cuda backend{GemmPrecision::BFloat16};
    backend.plan = plan;
    const std::size_t before = cuda::DeviceMemory::current();
    cuda::DeviceMemory::reset_peak();
    double ms = 0;
    {
      BlockTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(o, quantizers, SignSGD<>{}, backend, block, c, one_batch, "bench");
      run.step();
      ms = 1e3 * seconds([&] {
             for (int i = 0; i < 10; ++i) run.step();
           }) / 10;
    }
    if (plan.micro_batch == 0) whole_ms = ms;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    std::printf("| {%ld, %ld, %ld} | %.1f | %.3f | %.2f | %.2f |\n", plan.micro_batch, plan.attention_pairs, plan.attention_tile, ms, ms / whole_ms,
                static_cast<double>(cuda::DeviceMemory::peak() - before) / gib,
                static_cast<double>(cuda::BlockTuningRun<DynamicIntQuantizer>::workspace_bytes(c, batch, seqlen, GemmPrecision::BFloat16, plan) +
                                    cuda::BlockTuningRun<DynamicIntQuantizer>::state_bytes(c, seqlen, GemmPrecision::BFloat16, 128) +
                                    2 * calibration_copy_bytes(batch, seqlen * c.hidden)) / gib);
  }

  // (b) whole-block tuning at the reference's defaults, calibration as quantize_model keeps it
  // (streams on the device, the targets written over the fp stream), clipping searched (the
  // autoround program's default start)
  for (int p = fp32_whole ? 0 : 1; p < 2; ++p) {
    const GemmPrecision precision = p == 0 ? GemmPrecision::Float32 : GemmPrecision::BFloat16;
    TuneOptions o;  // iters 200, batch 8, seed 42: the reference's defaults
    o.clip_init = ClipInit::WeightedSearch;
    cuda::ActivationStream fp(samples, seqlen * c.hidden, StreamDtype::Float32, false), quantized;
    {
      cuda::Stream stream;
      cuda::DeviceBuffer<float> scratch(static_cast<std::size_t>(seqlen * c.hidden));
      for (Index s = 0; s < samples; ++s) fp.upload(s, inputs[static_cast<std::size_t>(s)], scratch, stream.get());
      quantized = fp.clone(stream.get());
      stream.synchronize();
    }
    double setup = 0, steps = 0, finish = 0, used_gib = 0;
    cuda::BlockTuningRun<DynamicIntQuantizer>::SetupTimes parts;
    {
      std::optional<cuda::BlockTuningRun<DynamicIntQuantizer>> run;
      setup = seconds([&] { run.emplace(o, quantizers, block, c, cuda::DeviceCalibration{&quantized, &fp}, "bench", precision); });
      parts = run->setup_times();
      std::size_t free_bytes = 0, total_bytes = 0;
      cuda::check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
      used_gib = static_cast<double>(total_bytes - free_bytes) / (1024.0 * 1024.0 * 1024.0);
      steps = seconds([&] {
        while (run->running()) run->step();
      });
      finish = seconds([&] {
        (void)run->result();
        run->forward_quantized(quantized);
      });
    }
    // floors: the targets and importance are a forward each over all samples (a third of a step's GEMMs per minibatch)
    const double forward_floor = static_cast<double>(samples) / static_cast<double>(batch) * 2.0 * tokens * params / (p == 0 ? rate[0] : rate[1]);
    std::printf("\nwhole block, %s, %ld samples x %ld tokens, 200 steps of batch 8, clipping searched: setup %.2f s (weights %.2f, "
                "calibration %.2f, targets %.2f, importance %.2f, search %.2f; a forward over all samples at the GEMM rate: %.2f s), "
                "steps %.1f s, finish (encode, download, next quantized stream) %.2f s, total %.1f s; GPU memory in use %.1f GiB\n",
                names[p], samples, seqlen, setup, parts.weights, parts.calibration, parts.targets, parts.importance, parts.search,
                forward_floor, steps, finish, setup + steps + finish, used_gib);
  }
  return 0;
}
