"""Keyed work units on disk: one small JSON file per unit of a long computation (an attack run over one shard of the
evaluation set, one batch of generated images), named by the hash of everything that determines its result.

A unit that exists is never recomputed; a killed computation loses at most the units that were in flight. Each
file is written atomically (:class:`genrobust.store.cached.CachedFile`, the one mechanism of every cache file), so
two processes that compute the same unit at once cannot corrupt it: both write the same content and the last rename
wins. Each file carries a sha256 of its content; a file that does not parse or whose checksum does not match
(truncated, edited, half-copied) is reported in one line, deleted and computed again.

    store = UnitStore(runs_dir() / "eval" / weights_digest)
    rec = store.get(key)          # None: missing (or corrupt: warned and deleted)
    store.put(key, {...})         # atomic; returns what get() will return

A unit may carry tensors (generated images): they go to ``<hash>.pt`` first, and the JSON written after it
records the sha256 of that file, so a unit is complete exactly when its JSON exists and both checksums match.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from ..core.config import config_hash
from .cached import CacheWarning, CachedFile

UNIT_FORMAT = "genrobust-unit-v1"


class UnitWarning(CacheWarning):
    """A unit file was unreadable and is recomputed."""


def _checksum(key: dict, result: dict) -> str:
    blob = json.dumps({"key": key, "result": result}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _plain(obj):
    """What a JSON round trip makes of ``obj`` (tuples -> lists, other objects -> str): the form stored and read."""
    return json.loads(json.dumps(obj, default=str))


class UnitStore:
    """Units under one directory, each ``<hash of its key>.json`` holding {format, key, result, sha256}."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path(self, key: dict) -> Path:
        return self.directory / f"{config_hash(key)}.json"

    def _record(self, key: dict) -> CachedFile[dict]:
        path = self.path(key)
        want = _plain(key)

        def read(p: Path) -> dict:
            rec = json.loads(p.read_bytes())
            if not (rec.get("format") == UNIT_FORMAT and rec.get("key") == want
                    and rec.get("sha256") == _checksum(rec["key"], rec["result"])):
                raise ValueError("checksum or key mismatch")
            return rec["result"]

        def write(fh, result: dict) -> None:
            rec = {"format": UNIT_FORMAT, "key": want, "result": result, "sha256": _checksum(want, result)}
            fh.write((json.dumps(rec, sort_keys=True) + "\n").encode())

        return CachedFile(path, read, write, what="unit", category=UnitWarning, companions=(path.with_suffix(".pt"),))

    def _tensor_file(self, key: dict, sha256: str | None) -> CachedFile[dict]:
        path = self.path(key)

        def read(p: Path) -> dict[str, torch.Tensor]:
            blob = p.read_bytes()
            if hashlib.sha256(blob).hexdigest() != sha256:
                raise ValueError("tensor file checksum mismatch")
            return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)

        return CachedFile(path.with_suffix(".pt"), read, lambda fh, blob: fh.write(blob), what="unit",
                          category=UnitWarning, companions=(path,))

    def get(self, key: dict) -> dict | None:
        """The unit's result, or None when it is missing or unreadable (then the file is deleted, with a warning)."""
        return self._record(key).get()

    def tensors(self, key: dict) -> dict[str, torch.Tensor] | None:
        """The tensors of a unit stored with ``put(..., tensors=...)``, or None (missing; or corrupt: warned and
        the unit deleted, so it is computed again)."""
        result = self.get(key)
        if result is None:
            return None
        entry = self._tensor_file(key, result.get("tensors_sha256"))
        if not entry.path.is_file():
            entry.drop("its tensor file is missing")
            return None
        return entry.get()

    def put(self, key: dict, result: dict, tensors: dict[str, torch.Tensor] | None = None) -> dict:
        if tensors is not None:  # the tensor file first: the JSON, written last, vouches for it
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, buf)
            blob = buf.getvalue()
            self._tensor_file(key, None).put(blob)
            result = {**result, "tensors_sha256": hashlib.sha256(blob).hexdigest()}
        return self._record(key).put(_plain(result))

    def __contains__(self, key: dict) -> bool:
        return self.path(key).is_file()
