"""Builds the fusedkd Python package: the ops of include/fusedkd/torch.hpp, compiled with
torch.utils.cpp_extension against the PyTorch that runs this script (its own headers), plus the
pure-Python modules in fusedkd/.

Install (inside a virtual environment that sees the system's torch):
    pip install --no-build-isolation ./python
or run scripts/install-python.sh, which does exactly that on Debian. --no-build-isolation matters:
without it pip would fetch another torch to build against.
"""
import os

import torch
from setuptools import setup
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INCLUDE = [os.path.join(ROOT, "include"), os.path.join(ROOT, "kernels")]
if not os.path.isfile(os.path.join(INCLUDE[0], "fusedkd", "torch.hpp")):
    raise RuntimeError("fusedkd: build the package from a checkout (python/ beside include/)")

# The CUDA backend is compiled in when this PyTorch is a CUDA build and nvcc is found; set
# FUSEDKD_CUDA=0 to build the CPU backend only.
WITH_CUDA = (torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
             and os.environ.get("FUSEDKD_CUDA", "1") != "0")

# The CPU backend's vectors follow the compiler's target (docs/design.md, "Static dispatch"): by
# default this machine's (-march=native); FUSEDKD_MARCH=x86-64-v2 (or haswell, ...) builds a
# package for other machines, FUSEDKD_MARCH= (empty) the compiler's default (one lane on x86-64).
march = os.environ.get("FUSEDKD_MARCH", "native")
cxx_flags = ["-O3", "-std=c++17", "-fopenmp"] + ([f"-march={march}"] if march else [])
if WITH_CUDA:
    ext = cpp_extension.CUDAExtension(
        "fusedkd._C", ["csrc/fusedkd_ops.cu"], include_dirs=INCLUDE,
        extra_compile_args={"cxx": cxx_flags,
                            "nvcc": ["-O3", "-std=c++17", "-Xcompiler", "-fopenmp"]
                            + (["-Xcompiler", f"-march={march}"] if march else [])},
        extra_link_args=["-fopenmp"])
else:
    ext = cpp_extension.CppExtension(
        "fusedkd._C", ["csrc/fusedkd_ops.cpp"], include_dirs=INCLUDE,
        extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"])

setup(
    name="fusedkd",
    version="0.1.0",
    description="Fused knowledge-distillation losses (NKD, USKD, KD, DKD) for PyTorch",
    packages=["fusedkd"],
    ext_modules=[ext],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    python_requires=">=3.8",
)
