"""The one cache-file mechanism (CachedFile): read and verify, a corrupt file warned once, deleted and computed again;
atomic fsynced writes (units, the decoded-data cache, FID's caches)

One on-disk cache entry, the one mechanism of every cache and unit file: read a file and verify it, and on a
corrupt, truncated or foreign file warn once (one line naming the file and what was wrong), delete it (and its
companion files) and let it be computed again; writes are atomic and fsynced.

    entry = CachedFile(cache_dir() / "fid" / "feat-<hash>.npy", read=_read_features, write=_write_features,
                       what="FID cache file")
    features = entry.get_or_compute(lambda: extractor(x))

``read(path)`` returns the value, or raises when the file is not what was asked (a reader raises ``ValueError``
with the reason for a file that parses but holds another key, version or shape). ``write(fh, value)`` writes to
an open binary file; the bytes go to a temporary file beside the target, fsynced, then renamed over it
(:func:`genrobust.store.io.atomic_path`), so a killed run leaves the old file or none, never half of one.

Users: keyed work units (:mod:`genrobust.store.units`), the decoded-array cache of an image folder
(:mod:`genrobust.data.cache`), the FID feature and reference-statistics caches
(:mod:`genrobust.measure.fid_features`). Each keeps its own file names and formats; only the reading, verifying,
dropping and writing are here.
"""
from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Generic, Optional, TypeVar

from .io import atomic_path

T = TypeVar("T")

# What reading a damaged file raises (json, numpy/zip, torch, pickle-free loaders). A reader's own bug (NameError,
# ImportError, ...) is not among them: it propagates instead of being taken for a corrupt file and recomputed.
DAMAGED = (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, EOFError, RuntimeError,
           zipfile.BadZipFile, pickle.UnpicklingError)


class CacheWarning(UserWarning):
    """A cache or unit file was corrupt or stale; it was deleted and is computed again."""


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(fh)`` into a temporary file beside ``path``, flushed and fsynced, then renamed over ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class CachedFile(Generic[T]):
    """One cache file: where it is, how to read and verify it, how to write it.

    ``what`` names it in the warning ("{path}: corrupt {what} ({why}); deleting it and computing it again");
    ``category`` is the warning's class (a subclass of :class:`CacheWarning`, or a caller's own, e.g. FIDWarning);
    ``companions`` are deleted with it (a unit's tensor file and its JSON vouch for each other); ``best_effort``:
    a file that cannot be written (read-only or full disk) is skipped with a warning instead of raising -- for a
    cache whose value is returned anyway (decoded images), never for results."""
    path: Path
    read: Callable[[Path], T]
    write: Callable[[BinaryIO, T], None]
    what: str = "cache file"
    category: type[Warning] = CacheWarning
    companions: tuple[Path, ...] = ()
    best_effort: bool = False

    def get(self) -> Optional[T]:
        """The verified value, or None when the file is absent, or corrupt (then warned once and deleted)."""
        if not self.path.is_file():
            return None
        try:
            return self.read(self.path)
        except DAMAGED as exc:
            self.drop(_first_line(exc))
            return None

    def drop(self, why: str) -> None:
        """Warn (one line) and delete the file and its companions, so that the next get() computes it again."""
        warnings.warn(f"{self.path}: corrupt {self.what} ({why}); deleting it and computing it again",
                      self.category, stacklevel=3)
        for p in (self.path, *self.companions):
            p.unlink(missing_ok=True)

    def put(self, value: T) -> T:
        """Write ``value`` atomically; returns it."""
        try:
            write_atomic(self.path, lambda fh: self.write(fh, value))
        except OSError as exc:
            if not self.best_effort:
                raise
            warnings.warn(f"cannot write {self.what} {self.path} ({exc}); continuing without it", self.category,
                          stacklevel=2)
        return value

    def get_or_compute(self, compute: Callable[[], T]) -> T:
        """The stored value if it reads and verifies, else ``compute()``, written for next time."""
        got = self.get()
        return got if got is not None else self.put(compute())
