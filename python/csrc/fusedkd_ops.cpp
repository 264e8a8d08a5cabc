// python/csrc/fusedkd_ops.cpp — the shared library behind the Python package: it registers the
// fusedkd ops of include/fusedkd/torch.hpp with PyTorch's dispatcher (torch.ops.fusedkd.*).
// The package loads it with torch.ops.load_library; it is not a Python module.
// With a CUDA build of PyTorch, setup.py compiles it through fusedkd_ops.cu (nvcc), which adds
// the CUDA backend.
#include <fusedkd/torch.hpp>

TORCH_LIBRARY(fusedkd, m) { fusedkd::th::define_ops(m); }
