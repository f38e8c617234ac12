"""The decoded-array cache, keyed by the data's sha256 (through store/cached.py)

The decoded-array cache of an image folder or zip: ``<cache_dir>/cifar10-<sha256[:16]>.npz``, keyed by the
data's sha256 and a format version; read, verified and written atomically by the one cache mechanism
(:class:`genrobust.store.cached.CachedFile`): a corrupt or stale file is deleted with a warning and re-decoded."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..store.cached import CachedFile
from .base import CACHE_VERSION, IMAGE_SIZE

CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y")


def cache_entry(cache_file: Path, sha: str) -> CachedFile[tuple[dict[str, np.ndarray], dict]]:
    """The cache file of the data with this sha256, as (arrays, meta); a file that cannot be written (read-only or
    full disk) is skipped with a warning: the decoded arrays are still returned."""

    def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            if header.get("sha256") != sha or header.get("version") != CACHE_VERSION:
                raise ValueError(f"cache is for sha256 {header.get('sha256')!r} version {header.get('version')!r}")
            arrays = {k: npz[k] for k in CACHE_KEYS}
        meta = header["meta"]
        if not isinstance(meta, dict) or "name" not in meta:
            raise ValueError("no provenance meta")
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if x.dtype != np.uint8 or x.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE) or y.dtype != np.int64 \
                    or len(y) != len(x):
                raise ValueError(f"bad {split} arrays {x.dtype}{x.shape} / {y.dtype}{y.shape}")
        return arrays, meta

    def write(fh, value: tuple[dict[str, np.ndarray], dict]) -> None:
        arrays, meta = value
        header = {"sha256": sha, "version": CACHE_VERSION, "meta": meta}
        np.savez(fh, header=np.array(json.dumps(header)), **arrays)

    return CachedFile(cache_file, read, write, what="decoded-data cache", best_effort=True)
