"""Splits of a loaded dataset: the seeded validation split, class-balanced subsets, and :class:`Prepared` -- the
splits every training and evaluation run works on (:func:`prepare_data`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import DataConfig, config_hash
from .base import DataError, check_labels
from .sources import load
from .synthetic import SyntheticSpec


def _first_per_class(y: torch.Tensor, n: int, seed: int, fn: str, arg: str, also: str = "") -> torch.Tensor:
    """Sorted int64 indices: for each class (in sorted class order, which keeps the generator stream
    deterministic), the first ``n`` of a seeded permutation of its examples (CPU generator: the same on any
    machine). ``n`` above the smallest class fails with one line naming ``fn``'s argument ``arg``."""
    check_labels(y, fn)
    y = y.detach().cpu()
    classes, counts = torch.unique(y, return_counts=True)
    if n < 0 or (len(counts) and n > int(counts.min())):
        smallest = int(counts.min()) if len(counts) else 0
        raise DataError(f"{fn}: {arg}={n} but the smallest class has {smallest} examples; use 0..{smallest}{also}")
    g = torch.Generator().manual_seed(int(seed))
    picked = []
    for c in classes.tolist():
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        picked.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.sort(torch.cat(picked)).values.to(torch.int64) if picked else torch.empty(0, dtype=torch.int64)


def stratified_split(y: torch.Tensor, val_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx): for each class, ``val_per_class`` indices of a seeded permutation go to val.

    int64, sorted ascending, disjoint, covering every index; the same (y, val_per_class, seed) gives the same
    split on any machine (CPU generator).
    """
    val_idx = _first_per_class(y, val_per_class, seed, "stratified_split", "val_per_class")
    is_val = torch.zeros(len(y), dtype=torch.bool)
    is_val[val_idx] = True
    train_idx = torch.nonzero(~is_val, as_tuple=True)[0]
    return train_idx.to(torch.int64), val_idx


def subset_per_class(y: torch.Tensor, n_per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted int64 indices: the first ``n_per_class`` of a seeded permutation of each class (None -> all)."""
    if n_per_class is None:
        check_labels(y, "subset_per_class")
        return torch.arange(len(y), dtype=torch.int64)
    return _first_per_class(y, n_per_class, seed, "subset_per_class", "n_per_class", " or None for all")


@dataclass(frozen=True)
class Prepared:
    """Splits as uint8 (N, 3, 32, 32) + int64 labels, after the seeded validation split and subsets."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: dict          # genrobust.data provenance record (name, path, sha256, synthetic)
    split: dict           # how val/subsets were drawn (seed, sizes)

    def identity(self) -> dict:
        """What these splits are, for keys of work derived from them: the data's sha256 (for synthetic data, a hash
        of its generator record; where the file lies does not change its bytes) and the split."""
        src = {k: v for k, v in self.source.items() if k != "path"}
        return {"data": src.get("sha256") or config_hash(src), "split": self.split}

    def selection_split(self, select_on: str):
        if select_on == "test":
            return self.test_x, self.test_y
        if select_on == "val":
            if len(self.val_y) == 0:
                raise ValueError("select_on='val' needs data.val_per_class > 0; set it or use select_on='test'")
            return self.val_x, self.val_y
        return None


def prepare_data(dcfg: DataConfig, *, progress: bool = True) -> Prepared:
    synthetic = SyntheticSpec(dcfg.synthetic_train_per_class, dcfg.synthetic_test_per_class, dcfg.seed) \
        if dcfg.source == "synthetic" else None
    splits = load(dcfg.source, dcfg.path, synthetic=synthetic, progress=progress)
    tr_idx, va_idx = stratified_split(splits.train_y, dcfg.val_per_class, dcfg.seed)
    if dcfg.train_per_class is not None:
        keep = subset_per_class(splits.train_y[tr_idx], dcfg.train_per_class, dcfg.seed)
        tr_idx = tr_idx[keep]
    te_idx = subset_per_class(splits.test_y, dcfg.test_per_class, dcfg.seed)
    split = {"seed": dcfg.seed, "val_per_class": dcfg.val_per_class, "train_per_class": dcfg.train_per_class,
             "test_per_class": dcfg.test_per_class, "n_train": len(tr_idx), "n_val": len(va_idx),
             "n_test": len(te_idx)}
    return Prepared(splits.train_x[tr_idx], splits.train_y[tr_idx], splits.train_x[va_idx], splits.train_y[va_idx],
                    splits.test_x[te_idx], splits.test_y[te_idx], splits.source.describe(), split)
