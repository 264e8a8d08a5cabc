// tests/cuda/runner/runner_f32.cu — the runner's calls for float logits (runner_impl.cuh).
#include "runner_impl.cuh"

FKCUDA_RUNNER_INSTANTIATE(float)
