"""fusedkd: fused knowledge-distillation losses (NKD, USKD, KD, DKD) for PyTorch.

Each loss reads the logits once and computes the loss and its gradient in the same pass; the
backward pass only scales the saved gradient. The modules take the released modules' arguments,
so that one changed line switches a training script to the fused loss:

    criterion = fusedkd.NKDLoss(temp=1.0, gamma=1.5)       # was: NKDLoss(temp=1.0, gamma=1.5)
    loss = criterion(logit_s, logit_t, gt_label)

The ops are also registered as torch.ops.fusedkd.{nkd, kd, dkd, uskd}. See docs/python.md.
"""
import importlib.machinery
import os

import torch


def _load_ops():
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_C" + suffix)
        if os.path.isfile(path):
            torch.ops.load_library(path)
            return path
    raise ImportError(
        "fusedkd: the compiled ops (fusedkd/_C*.so) are missing; install the package with "
        "`pip install --no-build-isolation ./python` (or scripts/install-python.sh), and do not "
        "import it from the python/ source folder")


_LIBRARY = _load_ops()

from . import functional  # noqa: E402
from .functional import dkd_loss, kd_loss, nkd_loss, uskd_loss  # noqa: E402
from .modules import DKDLoss, KDLoss, NKDLoss, USKDLoss  # noqa: E402

__version__ = "0.1.0"
__all__ = ["NKDLoss", "USKDLoss", "KDLoss", "DKDLoss", "nkd_loss", "uskd_loss", "kd_loss",
           "dkd_loss", "functional"]
