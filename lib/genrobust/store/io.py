"""One writer and one reader per file format: JSON, JSON lines, torch files. Every write is atomic: to a temporary
file in the same directory, then ``os.replace`` -- a run killed mid-write leaves the previous file (or none), never
half of one.
"""
from __future__ import annotations

import contextlib
import hashlib
import dataclasses
import io
import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch


class ResultsError(ValueError):
    """A missing or unreadable results/checkpoint file."""


# Atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the result the permissions a plain open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def sha256_file(path, h: "hashlib._Hash | None" = None) -> "hashlib._Hash":
    """The sha256 of a file's bytes, read in 1 MiB blocks (into ``h`` when given, to hash several files as one)."""
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file; run the notebook/command that produces it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: corrupt JSON ({e}); delete it and re-run the step that writes it") from None


def append_jsonl(path, record: dict) -> None:
    """Append one JSON line (a metrics log). A line is written with one write() and flushed + fsynced, so a
    killed run leaves whole lines; readers skip a truncated last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=_json_default) + "\n"
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


def save_torch(path, obj) -> Path:
    # serialize to memory first: torch.save to a temp file + rename keeps the old checkpoint on a kill
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def load_torch(path, map_location="cpu"):
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such checkpoint; train it first (`genrobust train --profile PROFILE` or "
                           "notebook 01) or fix the path")
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings, containers); unpickling anything else could
        # run code from a file someone sent, so torch's restricted unpickler refuses it before it runs
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch words it "unsupported GLOBAL posix.system" or "Unsupported global: GLOBAL posix.system"
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(e))
        if found:  # a Python object the restricted unpickler blocked: nothing of it ran
            raise ResultsError(f"{path}: refused to load: it names the Python object {found.group(1)}, "
                               "which unpickling could run; checkpoints are tensors and plain data only. Load only "
                               "files you trust, re-saved as a state dict of tensors") from None
        raise ResultsError(f"{path}: unreadable checkpoint (damaged, or not a torch file); delete it and retrain") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise ResultsError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it and retrain") from None

