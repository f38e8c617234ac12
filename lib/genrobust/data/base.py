"""What every data module shares: the CIFAR-10 classes, the one-line :class:`DataError`, and the provenance types
(:class:`DataSource`, :class:`Splits`) every loader returns.

Image tensors are uint8, shape (N, 3, 32, 32), values 0..255; labels are int64, shape (N,).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# The allowed values live with the config that validates them (one owner).
from ..core.cifar10 import CLASSES, NUM_CLASSES  # noqa: F401 (re-exported)
from ..core.config import AUGMENTATIONS  # noqa: F401 (re-exported)
from ..core.config import DATA_SOURCES as SOURCES  # noqa: F401
from ..store.io import sha256_file  # noqa: F401 (re-exported: the data loaders hash their files)

IMAGE_SIZE = 32
SPLITS = ("train", "test")
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
JPEG_EXTS = frozenset({".jpg", ".jpeg"})
BATCH_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
BATCHES_DIR = "cifar-10-batches-py"
# Bump when the decoded-array format or decoding changes, so stale caches are re-decoded, not trusted.
CACHE_VERSION = 1
FIX_HINT = "set GENROBUST_DATA or pass path= to a cifar-10-batches-py folder, a CIFAR-10 image folder or zip"

# Names as they appear in provenance records (and in results that must say which data they used).
NAME_BATCHES = "CIFAR-10 (original python batches)"
NAME_JPEG = "CIFAR-10 (JPEG copy)"
NAME_IMAGEFOLDER = "CIFAR-10 (image folder)"
NAME_SYNTHETIC = "SYNTHETIC class-conditional shapes (not CIFAR-10)"


class DataError(ValueError):
    """Bad or missing data. The message is one line: what is wrong, then how to fix it."""

    def __init__(self, message: str):
        # Collapse newlines from wrapped exceptions so the message stays one line (greppable in logs).
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class DataSource:
    """Where a dataset came from; ``describe()`` is the JSON provenance record stored with results.

    ``sha256`` identifies the exact bytes read:
      * zip: sha256 of the zip file;
      * batches: sha256 of the six files ``data_batch_1..5, test_batch`` concatenated in sorted name order;
      * image directory: sha256 of the text made of one line ``<relative posix path>\\0<sha256 of file>\\n``
        per image file, sorted by path (so renaming, adding or changing any image changes it);
      * synthetic: None; ``extra`` holds the generator parameters (seed, sizes, noise) instead.
    ``extra`` is a tuple of (key, value) pairs (kept hashable so the dataclass stays frozen and hashable).
    """

    kind: str
    name: str
    path: str | None
    sha256: str | None
    synthetic: bool
    extra: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> dict:
        record = {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "synthetic": self.synthetic,
        }
        for key, value in self.extra:
            record[key] = _jsonable(value)
        return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        if all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value) and value:
            return {k: _jsonable(v) for k, v in value}
        return [_jsonable(v) for v in value]
    return value


def describe_source(source: DataSource) -> dict:
    """JSON-serializable provenance record of ``source`` (same as ``source.describe()``)."""
    return source.describe()


@dataclass(frozen=True)
class Splits:
    """Train/test arrays plus where they came from. x: uint8 (N, 3, 32, 32); y: int64 (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: DataSource


def check_labels(y: torch.Tensor, fn: str) -> None:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"{fn}: y must be a 1-D integer label tensor, got {getattr(y, 'dtype', type(y))} {tuple(getattr(y, 'shape', ()))}; pass Splits.train_y")
