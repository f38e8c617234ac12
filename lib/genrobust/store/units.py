"""Keyed work units on disk: one small JSON file per unit of a long computation (an attack run over one shard of the
evaluation set, one batch of generated images), named by the hash of everything that determines its result.

A unit that exists is never recomputed; a killed computation loses at most the units that were in flight. Each
file is written atomically (temporary file + rename, :func:`genrobust.store.io.atomic_path`), so two processes that
compute the same unit at once cannot corrupt it: both write the same content and the last rename wins. Each file
carries a sha256 of its content; a file that does not parse or whose checksum does not match (truncated, edited,
half-copied) is reported in one line, deleted and computed again.

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
import warnings
from pathlib import Path

import torch

from ..core.config import config_hash
from .io import atomic_path

UNIT_FORMAT = "genrobust-unit-v1"


class UnitWarning(UserWarning):
    """A unit file was unreadable and is recomputed."""


def _checksum(key: dict, result: dict) -> str:
    blob = json.dumps({"key": key, "result": result}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class UnitStore:
    """Units under one directory, each ``<hash of its key>.json`` holding {format, key, result, sha256}."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path(self, key: dict) -> Path:
        return self.directory / f"{config_hash(key)}.json"

    def get(self, key: dict) -> dict | None:
        """The unit's result, or None when it is missing or unreadable (then the file is deleted, with a warning)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            rec = json.loads(path.read_text())
            ok = (rec.get("format") == UNIT_FORMAT and rec.get("key") == json.loads(json.dumps(key, default=str))
                  and rec.get("sha256") == _checksum(rec["key"], rec["result"]))
            why = "checksum or key mismatch"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            ok, why = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}"
        if ok:
            return rec["result"]
        self._drop(path, why)
        return None

    def _drop(self, path: Path, why: str) -> None:
        warnings.warn(f"unit {path} is corrupt ({why}); deleting it and computing it again", UnitWarning,
                      stacklevel=3)
        path.unlink(missing_ok=True)
        path.with_suffix(".pt").unlink(missing_ok=True)

    def tensors(self, key: dict) -> dict[str, torch.Tensor] | None:
        """The tensors of a unit stored with ``put(..., tensors=...)``, or None (missing; or corrupt: warned and
        the unit deleted, so it is computed again)."""
        result = self.get(key)
        if result is None:
            return None
        path = self.path(key).with_suffix(".pt")
        try:
            blob = path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != result.get("tensors_sha256"):
                raise ValueError("tensor file checksum mismatch")
            return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError, EOFError) as e:
            self._drop(self.path(key), f"tensors: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}")
            return None

    def put(self, key: dict, result: dict, tensors: dict[str, torch.Tensor] | None = None) -> dict:
        if tensors is not None:  # the tensor file first: the JSON, written last, vouches for it
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, buf)
            blob = buf.getvalue()
            with atomic_path(self.path(key).with_suffix(".pt")) as tmp:
                tmp.write_bytes(blob)
            result = {**result, "tensors_sha256": hashlib.sha256(blob).hexdigest()}
        key, result = json.loads(json.dumps(key, default=str)), json.loads(json.dumps(result, default=str))
        rec = {"format": UNIT_FORMAT, "key": key, "result": result, "sha256": _checksum(key, result)}
        with atomic_path(self.path(key)) as tmp:
            tmp.write_text(json.dumps(rec, sort_keys=True) + "\n")
        return result

    def __contains__(self, key: dict) -> bool:
        return self.path(key).is_file()
