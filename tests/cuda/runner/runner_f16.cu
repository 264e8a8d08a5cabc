// tests/cuda/runner/runner_f16.cu — the runner's calls for __half logits (runner_impl.cuh).
#include "runner_impl.cuh"

FKCUDA_RUNNER_INSTANTIATE(__half)
