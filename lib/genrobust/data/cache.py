"""The decoded-array cache of an image folder or zip: ``<cache_dir>/cifar10-<sha256[:16]>.npz``, keyed by the
data's sha256 and a format version; written atomically, and a corrupt or stale file is deleted and re-decoded."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..store.io import atomic_path
from .base import CACHE_VERSION, IMAGE_SIZE

CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y")


def read_cache(cache_file: Path, sha: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, meta) from the cache, or None if absent; a corrupt/stale cache is deleted with a warning."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            if header.get("sha256") != sha or header.get("version") != CACHE_VERSION:
                raise ValueError(f"cache is for sha256 {header.get('sha256')!r} version {header.get('version')!r}")
            arrays = {k: npz[k] for k in CACHE_KEYS}
        meta = header["meta"]
        if not isinstance(meta, dict) or "name" not in meta:
            raise ValueError("no provenance meta")
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if x.dtype != np.uint8 or x.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE) or y.dtype != np.int64 or len(y) != len(x):
                raise ValueError(f"bad {split} arrays {x.dtype}{x.shape} / {y.dtype}{y.shape}")
        return arrays, meta
    except Exception as exc:
        warnings.warn(f"{cache_file}: corrupt or stale cache ({type(exc).__name__}: {exc}); deleting it and re-decoding", stacklevel=4)
        try:
            cache_file.unlink()
        except OSError:
            pass
        return None


def write_cache(cache_file: Path, arrays: dict[str, np.ndarray], sha: str, meta: dict) -> None:
    """Atomic write (genrobust.store.io.atomic_path, fsynced before the rename). A cache that cannot be written
    (read-only or full disk) is skipped with a warning: the decoded arrays are still returned."""
    header = {"sha256": sha, "version": CACHE_VERSION, "meta": meta}
    try:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        warnings.warn(f"cannot write cache {cache_file} ({exc}); continuing without a cache", stacklevel=3)
