#pragma once
// autoround-cpp: AutoRound weight quantization (SignRound) for C++.
// The umbrella header: includes the public headers and nothing else.

#include "core/atomic_file.hpp"
#include "core/output_file.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/fp16.hpp"
#include "core/matrix.hpp"

#include "quantizer/double_quantizer.hpp"
#include "quantizer/float_quantizer.hpp"
#include "quantizer/group_layout.hpp"
#include "quantizer/int_quantizer.hpp"
#include "quantizer/minifloat.hpp"
#include "quantizer/quantized_weight.hpp"
#include "quantizer/quantizer.hpp"

#include "optimizer/adam.hpp"
#include "optimizer/optimizer.hpp"
#include "optimizer/schedule.hpp"
#include "optimizer/sign_sgd.hpp"

#include "format/ggml_blocks.hpp"
#include "format/gguf_reader.hpp"
#include "format/gguf_writer.hpp"
#include "format/safetensors.hpp"

#include "pack/awq.hpp"
#include "pack/float_tensors.hpp"
#include "pack/bit_stream.hpp"
#include "pack/ggml_quantize.hpp"
#include "pack/ggml_tuned_kquant.hpp"
#include "pack/gptq.hpp"
#include "pack/int_weight_view.hpp"

#include "model/activation_quant.hpp"
#include "model/calibration.hpp"
#include "model/calibration_samples.hpp"
#include "model/gguf_source.hpp"
#include "model/hf_loader.hpp"
#include "model/llama_block.hpp"
#include "model/llama_forward.hpp"
#include "model/llama_model.hpp"
#include "model/model_source.hpp"
#include "model/perplexity.hpp"
#include "model/token_file.hpp"

#include "backend/backend.hpp"
#include "backend/cpu.hpp"
#include "backend/cuda.hpp"  // the policy's name only; the GPU runs: backend/cuda/cuda_runs.cuh (nvcc)

#include "tune/block_tuning_run.hpp"
#include "tune/calibration_inputs.hpp"
#include "tune/index_sampler.hpp"
#include "tune/layer_tuner.hpp"
#include "tune/layer_tuning_run.hpp"
#include "tune/model_quantizer.hpp"
#include "tune/python_random.hpp"
#include "tune/run_checkpoint.hpp"
#include "tune/tunable_weight.hpp"
#include "tune/tune_options.hpp"

#include "export/gguf_model.hpp"
#include "export/hf_checkpoint.hpp"
#include "export/quantized_llama.hpp"
#include "export/tokenizer_files.hpp"
