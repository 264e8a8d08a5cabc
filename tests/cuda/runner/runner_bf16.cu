// tests/cuda/runner/runner_bf16.cu — the runner's calls for __nv_bfloat16 logits (runner_impl.cuh).
#include "runner_impl.cuh"

FKCUDA_RUNNER_INSTANTIATE(__nv_bfloat16)
