"""``torch.compile`` of the modules attacks run on, where it pays (the profile setting ``compile``).

Measured (benchmarks/bench_compile.py; docs/performance.md): on the 2-core CPU, inductor compiles the folded
channels-last ResNet18 width 0.125 d_k in ~49 s and then runs its input gradients 1.10x faster than eager. An
evaluation attacks 10 d_k (each its own module: 10 compiles) plus the softmax model, with batch sizes that vary per
class (Eq. 11-12 and multi-targeted attack class subsets), so the compile time is not paid back in a cpu-profile
notebook 03 (~25 min of attacks): ``compile="off"`` there. Inductor needs a C compiler on the CPU; without one,
:func:`maybe_compile` returns the module as it is, with one warning line.
"""
from __future__ import annotations

import os
import shutil
import warnings

import torch
import torch.nn as nn

from .models import GenerativeClassifier

COMPILE_MODES = ("off", "attacks")


def c_compiler() -> str | None:
    """The C compiler inductor would use on the CPU ($CXX, $CC, c++, g++, gcc, cc, clang), or None."""
    for name in (os.environ.get("CXX"), os.environ.get("CC"), "c++", "g++", "gcc", "cc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def maybe_compile(model: nn.Module, mode: str) -> nn.Module:
    """``model`` with its networks compiled for attacks when ``mode`` is 'attacks' (a GenerativeClassifier: each
    sub-model d_k, since Eq. 11-12 and margin attacks call them one at a time), else ``model`` itself. On a CPU
    machine without a C compiler: one warning line and no compilation."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile: {mode!r} is not allowed; choose from {list(COMPILE_MODES)}")
    if mode == "off":
        return model
    on_cuda = next(model.parameters()).is_cuda
    if not on_cuda and c_compiler() is None:
        warnings.warn("compile='attacks' needs a C compiler for torch.compile on the CPU; none found (set CXX or "
                      "install gcc), so the attacks run uncompiled", stacklevel=2)
        return model
    if isinstance(model, GenerativeClassifier):
        for k, m in enumerate(model.models):
            model.models[k] = torch.compile(m)
        return model
    return torch.compile(model)
