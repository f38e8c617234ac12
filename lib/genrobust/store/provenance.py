"""Provenance: the record every results file carries (config, git commit, package versions, seed, data source +
sha256, device, wall time)."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from .paths import project_root


def git_commit(root: Path | None = None) -> str:
    root = root or project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        # results/ is what runs write, not code: a reproduction that rewrites results/<profile>/ notebook by
        # notebook stays on a clean commit
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", ".",
                                 ":(exclude)results"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return _commit_from_env()
        return sha.stdout.strip() + ("-dirty" if dirty_lines(status.stdout) else "")
    except (OSError, subprocess.SubprocessError):
        return _commit_from_env()


# An untracked file under these is code a run may import (a new module, a notebook) that the commit does not hold
UNTRACKED_CODE = ("lib/", "notebooks/")


def dirty_lines(porcelain: str) -> list[str]:
    """The lines of ``git status --porcelain`` that make a commit dirty: every change to a tracked file, and
    untracked files under lib/ and notebooks/ (other untracked files, e.g. scratch notes, do not run)."""
    return [line for line in porcelain.splitlines() if line.strip()
            and (not line.startswith("?? ") or line[3:].strip('"').startswith(UNTRACKED_CODE))]


COMMIT_ENV = "GENROBUST_GIT_COMMIT"


def _commit_from_env() -> str:
    """Where no git checkout is (a copy of the tree on a GPU machine, tools/gpu_run): the commit that copy was made
    from, as the packing side recorded it in ``$GENROBUST_GIT_COMMIT`` (with its ``-dirty`` mark), else 'unknown'."""
    return os.environ.get(COMMIT_ENV, "").strip() or "unknown"


# The code this process runs is the code of the commit checked out when genrobust was imported: a long run
# (a notebook that takes an hour) may see later commits land before it writes its results.
_IMPORT_COMMIT: str = git_commit()


PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pytorch-fid", "pyautoattack", "papermill")


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor(); '' when neither says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def device_info(device: str | torch.device | None = None) -> dict:
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # cpu_capability (torch's kernel family: AVX2, AVX512, ...) is recorded because training is bitwise
    # reproducible only on one kind: the same seed gives different weights under AVX2 and AVX512 kernels
    info = {"device": str(dev), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        # GPU runs are not bitwise reproducible across machines: the chip, CUDA and cuDNN name what ran
        info.update(gpu=torch.cuda.get_device_name(dev), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), torch=torch.__version__)
    return info


def provenance(config=None, *, data_source: dict | None = None, seed: int | None = None,
               wall_time_s: float | None = None, device=None, **extra) -> dict:
    """The record every results file carries."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    rec = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _IMPORT_COMMIT,
        "packages": package_versions(),
        "device": device_info(device),
        "seed": seed,
        "data_source": data_source,
        "wall_time_s": wall_time_s,
        "config": cfg,
    }
    head = git_commit()
    if head.removesuffix("-dirty") != rec["git_commit"].removesuffix("-dirty"):  # results being written dirty the tree
        rec["git_commit_at_write"] = head  # commits landed while this process ran; its code is git_commit's
    rec.update(extra)
    return rec

