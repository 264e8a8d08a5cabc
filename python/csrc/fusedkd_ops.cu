// python/csrc/fusedkd_ops.cu — the same registration compiled by nvcc: fusedkd/torch.hpp then
// dispatches CUDA tensors to the CUDA backend. Used by setup.py with a CUDA build of PyTorch.
#include "fusedkd_ops.cpp"
