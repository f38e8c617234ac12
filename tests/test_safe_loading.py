"""Files from elsewhere never run code: a crafted pickle whose unpickling would create a marker file is refused by
every loader a user can point at a file (checkpoint loader, load_classifier, training resume, the CIFAR-10 batch
reader), the marker is never created, and the one-line error names the file and what to do."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from genrobust.data import base, sources
from genrobust.data.base import DataError
from genrobust.store.checkpoints import load_classifier, load_model
from genrobust.store.io import ResultsError, load_torch


class _Evil:
    """Unpickling calls os.system: the payload of a crafted checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the crafted pickle ran code"


@pytest.mark.parametrize("loader", [load_torch, load_classifier, load_model], ids=lambda f: f.__name__)
def test_crafted_checkpoint_is_refused_before_it_runs(tmp_path, marker, loader):
    path = tmp_path / "model.pt"
    torch.save({"kind": "binary", "state_dict": {"w": torch.zeros(1)}, "x": _Evil(marker)}, path)
    with pytest.raises(ResultsError) as err:
        loader(path)
    msg = str(err.value)
    assert str(path) in msg and "refused to load" in msg and "posix.system" in msg and "\n" not in msg


def test_plain_checkpoints_still_load(tmp_path):
    # negative control: tensors, numbers, strings and containers are what our checkpoints hold, and they load
    path = tmp_path / "ok.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3, "rng": torch.get_rng_state(), "cfg": {"a": [1.5]}},
               path)
    assert load_torch(path)["epoch"] == 3
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ResultsError, match="unreadable checkpoint"):
        load_torch(junk)


def _batches(folder, payload):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in base.BATCH_FILES:
        entry = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        if name == "test_batch" and payload is not None:
            entry[b"extra"] = payload
        (folder / name).write_bytes(pickle.dumps(entry))


def test_crafted_cifar_batch_is_refused_before_it_runs(tmp_path, marker):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    _batches(folder, _Evil(marker))
    with pytest.raises(DataError) as err:
        sources.load("batches", tmp_path / "data", download=False)
    msg = str(err.value)
    assert "test_batch" in msg and "refused" in msg and "posix.system" in msg


def test_official_batch_layout_still_loads(tmp_path):
    # negative control: dicts of numpy arrays, bytes and lists (the official pickles' content) load
    _batches(tmp_path / "data" / "cifar-10-batches-py", None)
    assert sources.load("batches", tmp_path / "data", download=False).train_x.shape == (50, 3, 32, 32)
