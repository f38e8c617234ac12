"""CIFAR-10 as torchvision's python batches (``cifar-10-batches-py``: the original pickles, lossless), and
torchvision's download of them (the one loader that needs a network)."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch

from .base import (BATCH_FILES, BATCHES_DIR, FIX_HINT, IMAGE_SIZE, NAME_BATCHES, NUM_CLASSES, DataError, DataSource,
                   Splits, sha256_file)


class _BlockedGlobal(pickle.UnpicklingError):
    pass


class _DataOnlyUnpickler(pickle.Unpickler):
    """The official batches are pickled dicts of bytes, lists, numbers and numpy arrays: any other global a file
    names is refused before it can be called (a crafted pickle runs code through globals)."""

    # what numpy needs to rebuild an array (the batches' b"data" is one): no code beyond array construction
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _BlockedGlobal(f"it names the Python object {module}.{name}, which unpickling would call")


def torchvision_download(parent: Path) -> None:
    """Download + extract cifar-10-python.tar.gz into ``parent`` (torchvision checks the md5)."""
    import torchvision  # imported only when a download is needed (slow import)

    torchvision.datasets.CIFAR10(root=str(parent), train=True, download=True)


def load_batches(path: Path, *, download: bool) -> Splits:
    folder = path if path.name == BATCHES_DIR or (path / "data_batch_1").exists() else path / BATCHES_DIR
    if not folder.is_dir():
        if not download:
            raise DataError(f"{folder}: not found; copy {BATCHES_DIR} there, pass download=True, or {FIX_HINT}")
        try:
            torchvision_download(folder.parent)
        except Exception as exc:  # offline: URLError, socket errors, checksum errors ...
            raise DataError(
                f"could not download CIFAR-10 into {folder.parent} ({type(exc).__name__}: {exc}); without internet "
                f"copy {BATCHES_DIR} there or {FIX_HINT}"
            ) from exc
    missing = [name for name in BATCH_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}; re-download {BATCHES_DIR} (download=True) or {FIX_HINT}")

    h = hashlib.sha256()
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for name in sorted(BATCH_FILES):  # sorted order defines the sha256 (see DataSource)
        file = folder / name
        sha256_file(file, h)
        try:
            with open(file, "rb") as f:
                entry = _DataOnlyUnpickler(f, encoding="bytes").load()
            data = np.asarray(entry[b"data"], dtype=np.uint8)
            labels = np.asarray(entry.get(b"labels", entry.get(b"fine_labels")), dtype=np.int64)
        except _BlockedGlobal as exc:
            raise DataError(f"{file}: refused: {exc}; CIFAR-10 batches hold only dicts, lists, bytes, numbers and "
                            "arrays, so this file is not one (re-download it from the official source)") from None
        except Exception as exc:
            raise DataError(f"{file}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); re-download it") from exc
        if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE or len(labels) != len(data):
            raise DataError(
                f"{file}: data has shape {data.shape} with {len(labels)} labels, expected (N, 3072) images of "
                f"3x32x32 with N labels; re-download it"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise DataError(f"{file}: labels outside 0..9; re-download it")
        split = "test" if name == "test_batch" else "train"
        xs[split].append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))  # stored channel-major (R plane, G, B)
        ys[split].append(labels)
    source = DataSource(
        kind="batches", name=NAME_BATCHES, path=str(folder), sha256=h.hexdigest(), synthetic=False,
        extra=(("sha256_of", "concatenation of " + ", ".join(sorted(BATCH_FILES))),),
    )
    return Splits(
        train_x=torch.from_numpy(np.ascontiguousarray(np.concatenate(xs["train"]))),
        train_y=torch.from_numpy(np.concatenate(ys["train"])),
        test_x=torch.from_numpy(np.ascontiguousarray(np.concatenate(xs["test"]))),
        test_y=torch.from_numpy(np.concatenate(ys["test"])),
        source=source,
    )
