"""CIFAR-10 loading, synthetic data, splits, the per-class binary task and augmentation.

Everything here is a pure function of its arguments: no global RNG is read or written (randomness comes from
an explicit seed or ``torch.Generator``), and files are written atomically (temp file in the same directory,
then ``os.replace``) so an interrupted run never leaves a half-written cache.

Image tensors are uint8, shape (N, 3, 32, 32), values 0..255; labels are int64, shape (N,). Use
:func:`to_float` to get float32 in [0, 1] on a device.

Sources (``load(source, ...)``):

* ``"batches"``: torchvision's ``cifar-10-batches-py`` folder (the original python pickles; lossless).
* ``"imagefolder"``: a directory or a ``.zip`` laid out as ``[prefix/]train/<class>/<image>`` and
  ``[prefix/]test/<class>/<image>`` with the 10 CIFAR-10 class names as folders. Decoding is slow (~12 s for
  60k JPEGs), so decoded arrays are cached in ``<cache_dir>/cifar10-<sha256[:16]>.npz``.
* ``"synthetic"``: :func:`make_synthetic`, a learnable stand-in for tests and CI smoke runs. It is never used
  as a fallback: asking for CIFAR-10 and not finding it raises :class:`DataError`.
* ``"auto"``: the first CIFAR-10 found in the order of :func:`default_search_paths`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    "AUGMENTATIONS",
    "BinaryBatches",
    "CLASSES",
    "DataError",
    "DataSource",
    "NUM_CLASSES",
    "SOURCES",
    "Splits",
    "augment",
    "default_search_paths",
    "describe_source",
    "find_project_root",
    "load",
    "load_cifar10",
    "make_synthetic",
    "stratified_split",
    "subset_per_class",
    "to_float",
]

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = 10
SOURCES = ("auto", "batches", "imagefolder", "synthetic")
AUGMENTATIONS = ("none", "crop_flip", "autoaugment_cutout")

IMAGE_SIZE = 32
_SPLITS = ("train", "test")
_IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
_JPEG_EXTS = frozenset({".jpg", ".jpeg"})
_BATCH_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
_BATCHES_DIR = "cifar-10-batches-py"
# Bump when the decoded-array format or decoding changes, so stale caches are re-decoded, not trusted.
_CACHE_VERSION = 1
_FIX_HINT = "set GENROBUST_DATA or pass path= to a cifar-10-batches-py folder, a CIFAR-10 image folder or zip"

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


# ----------------------------------------------------------------------------------------------- provenance


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


# ----------------------------------------------------------------------------------------------- locating


def find_project_root(start: str | os.PathLike | None = None) -> Path:
    """First ancestor of ``start`` (default cwd) whose pyproject.toml declares ``name = "genrobust"``;
    falls back to ``start`` itself."""
    start_path = Path(start if start is not None else os.getcwd()).resolve()
    pattern = re.compile(r'^\s*name\s*=\s*["\']genrobust["\']', re.MULTILINE)
    for candidate in (start_path, *start_path.parents):
        pyproject = candidate / "pyproject.toml"
        try:
            if pyproject.is_file() and pattern.search(pyproject.read_text(encoding="utf-8", errors="replace")):
                return candidate
        except OSError:
            continue
    return start_path


def default_search_paths(project_root: str | os.PathLike) -> list[tuple[str, Path]]:
    """The order ``load_cifar10("auto")`` tries, as (kind, path) pairs.

    1. ``$GENROBUST_DATA`` if set (kind ``"detect"``: dir, zip or batches folder, recognised by content);
    2. ``<root>/data/cifar-10-batches-py`` (``"batches"``);
    3. ``<root>/data/cifar10-jpeg.zip`` then ``<root>/data/cifar10`` (``"imagefolder"``);
    4. ``<root>/../shared/data/cifar10-jpeg.zip`` (``"imagefolder"``);
    5. torchvision download into ``<root>/data`` (``"download"``; only tried when download=True).
    """
    root = Path(project_root).resolve()
    paths: list[tuple[str, Path]] = []
    env = os.environ.get("GENROBUST_DATA")
    if env:
        paths.append(("detect", Path(env).expanduser().resolve()))
    paths += [
        ("batches", root / "data" / _BATCHES_DIR),
        ("imagefolder", root / "data" / "cifar10-jpeg.zip"),
        ("imagefolder", root / "data" / "cifar10"),
        ("imagefolder", (root / ".." / "shared" / "data" / "cifar10-jpeg.zip").resolve()),
        ("download", root / "data"),
    ]
    return paths


def _detect_kind(path: Path) -> tuple[str, Path]:
    """Recognise a CIFAR-10 location by its content: returns ("batches" | "imagefolder", path to load)."""
    if not path.exists():
        raise DataError(f"{path}: does not exist; {_FIX_HINT}")
    if path.is_file():
        if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
            return "imagefolder", path
        raise DataError(f"{path}: is a file but not a zip; {_FIX_HINT}")
    if (path / "data_batch_1").is_file() or (path / "batches.meta").is_file():
        return "batches", path
    if (path / _BATCHES_DIR).is_dir():
        return "batches", path / _BATCHES_DIR
    if _image_root(path) is not None:
        return "imagefolder", path
    if (path / "cifar10-jpeg.zip").is_file():
        return "imagefolder", path / "cifar10-jpeg.zip"
    raise DataError(
        f"{path}: no CIFAR-10 found (expected data_batch_* files, a {_BATCHES_DIR} folder, or train/ and test/ "
        f"class folders); {_FIX_HINT}"
    )


def _image_root(path: Path) -> Path | None:
    """The directory holding train/ and test/: ``path`` itself or its single subdirectory."""
    if (path / "train").is_dir() or (path / "test").is_dir():
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")] if path.is_dir() else []
    if len(subdirs) == 1 and ((subdirs[0] / "train").is_dir() or (subdirs[0] / "test").is_dir()):
        return subdirs[0]
    return None


# ----------------------------------------------------------------------------------------------- loaders


def load(
    source: str,
    path: str | os.PathLike | None = None,
    *,
    project_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    synthetic_train_per_class: int = 500,
    synthetic_test_per_class: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> Splits:
    """Dispatch on ``source`` in ``SOURCES``; ``seed`` and ``synthetic_*`` only matter for ``"synthetic"``."""
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
    if source == "synthetic":
        if path is not None:
            raise DataError(f"source 'synthetic' takes no path (got {path!r}); drop path= or pick another source")
        return make_synthetic(synthetic_train_per_class, synthetic_test_per_class, seed=seed)
    return load_cifar10(
        source, path, project_root=project_root, cache_dir=cache_dir, download=download, progress=progress
    )


def load_cifar10(
    source: str = "auto",
    path: str | os.PathLike | None = None,
    *,
    project_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
) -> Splits:
    """Load real CIFAR-10 from ``source`` in {"auto", "batches", "imagefolder"}; never returns synthetic data.

    ``path``: for "batches" the ``cifar-10-batches-py`` folder or its parent; for "imagefolder" a directory
    or zip; for "auto" any of these (recognised by content), else the :func:`default_search_paths` order.
    ``project_root`` defaults to the nearest ancestor of cwd with genrobust's pyproject.toml; ``cache_dir`` to
    ``$GENROBUST_CACHE`` or ``<project_root>/cache``.
    """
    if source not in ("auto", "batches", "imagefolder"):
        if source == "synthetic":
            raise DataError("load_cifar10 never returns synthetic data; call load('synthetic') or make_synthetic()")
        raise DataError(f"unknown CIFAR-10 source {source!r}; use one of auto, batches, imagefolder")
    root = find_project_root() if project_root is None else Path(project_root).resolve()
    cache = _resolve_cache_dir(cache_dir, root)

    if path is not None:
        p = Path(path).expanduser().resolve()
        if source == "auto":
            kind, p = _detect_kind(p)
        else:
            kind = source
        if kind == "batches":
            return _load_batches(p, download=download)
        return _load_imagefolder(p, cache_dir=cache, progress=progress)

    if source == "batches":
        return _load_batches(root / "data" / _BATCHES_DIR, download=download)

    tried: list[str] = []
    for kind, candidate in default_search_paths(root):
        if source == "imagefolder" and kind not in ("imagefolder", "detect"):
            continue
        if kind == "download":
            if not download:
                tried.append(f"torchvision download into {candidate} (skipped: download=False)")
                continue
            try:
                return _load_batches(candidate / _BATCHES_DIR, download=True)
            except DataError as exc:
                tried.append(f"torchvision download into {candidate} ({exc})")
                continue
        if kind == "detect":
            # The user named this location explicitly: if it is broken, say so rather than use another copy.
            kind, candidate = _detect_kind(candidate)
            if kind == "batches" and source == "imagefolder":
                raise DataError(f"GENROBUST_DATA={candidate} holds python batches, not images; use source 'batches' or 'auto'")
            if kind == "batches":
                return _load_batches(candidate, download=False)
            return _load_imagefolder(candidate, cache_dir=cache, progress=progress)
        if not candidate.exists():
            tried.append(f"{candidate} (not found)")
            continue
        try:
            if kind == "batches":
                return _load_batches(candidate, download=False)
            return _load_imagefolder(candidate, cache_dir=cache, progress=progress)
        except DataError as exc:
            warnings.warn(f"skipping broken CIFAR-10 candidate: {exc}", stacklevel=2)
            tried.append(f"{candidate} ({exc})")
    raise DataError(
        f"no CIFAR-10 found for source {source!r}; tried: " + "; ".join(f"[{i + 1}] {t}" for i, t in enumerate(tried))
        + f"; fix: {_FIX_HINT} (or enable download=True with internet access)"
    )


def _resolve_cache_dir(cache_dir: str | os.PathLike | None, root: Path) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get("GENROBUST_CACHE")
    return Path(env).expanduser().resolve() if env else root / "cache"


def _sha256_file(path: Path, h: "hashlib._Hash | None" = None) -> "hashlib._Hash":
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


# --- torchvision python batches -----------------------------------------------------------------------------


def _torchvision_download(parent: Path) -> None:
    """Download + extract cifar-10-python.tar.gz into ``parent`` (torchvision checks the md5)."""
    import torchvision

    torchvision.datasets.CIFAR10(root=str(parent), train=True, download=True)


def _load_batches(path: Path, *, download: bool) -> Splits:
    folder = path if path.name == _BATCHES_DIR or (path / "data_batch_1").exists() else path / _BATCHES_DIR
    if not folder.is_dir():
        if not download:
            raise DataError(f"{folder}: not found; copy {_BATCHES_DIR} there, pass download=True, or {_FIX_HINT}")
        try:
            _torchvision_download(folder.parent)
        except Exception as exc:  # offline: URLError, socket errors, checksum errors ...
            raise DataError(
                f"could not download CIFAR-10 into {folder.parent} ({type(exc).__name__}: {exc}); without internet "
                f"copy {_BATCHES_DIR} there or {_FIX_HINT}"
            ) from exc
    missing = [name for name in _BATCH_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}; re-download {_BATCHES_DIR} (download=True) or {_FIX_HINT}")

    h = hashlib.sha256()
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for name in sorted(_BATCH_FILES):  # sorted order defines the sha256 (see DataSource)
        file = folder / name
        _sha256_file(file, h)
        try:
            with open(file, "rb") as f:
                # These are the official pickles (as torchvision reads them); only load files you trust.
                entry = pickle.load(f, encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8)
            labels = np.asarray(entry.get(b"labels", entry.get(b"fine_labels")), dtype=np.int64)
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
        extra=(("sha256_of", "concatenation of " + ", ".join(sorted(_BATCH_FILES))),),
    )
    return Splits(
        train_x=torch.from_numpy(np.ascontiguousarray(np.concatenate(xs["train"]))),
        train_y=torch.from_numpy(np.concatenate(ys["train"])),
        test_x=torch.from_numpy(np.ascontiguousarray(np.concatenate(xs["test"]))),
        test_y=torch.from_numpy(np.concatenate(ys["test"])),
        source=source,
    )


# --- image folder / zip -----------------------------------------------------------------------------------------


def _plan_layout(names: list[str], where: str) -> list[tuple[str, str, int]]:
    """Validate ``[prefix/]split/class/image`` paths; returns sorted (member, split, label) for the images.

    Non-image files (README, LICENSE, ...) and OS junk (``__MACOSX/``, dotfiles) are ignored; every image
    file must sit in the layout.
    """
    fix = "expected [prefix/]train/<class>/<image> and [prefix/]test/<class>/<image> with the 10 CIFAR-10 class names"
    prefixes: set[tuple[str, ...]] = set()
    plan: list[tuple[str, str, int]] = []
    for name in names:
        parts = tuple(p for p in name.split("/") if p)  # zip names and relpaths are "/"-separated
        if not parts or name.endswith("/") or "__MACOSX" in parts or parts[-1].startswith("."):
            continue
        if _suffix(parts[-1]) not in _IMAGE_EXTS:
            continue
        if len(parts) < 3 or parts[-3] not in _SPLITS:
            raise DataError(f"{where}: image {name!r} is outside the layout; {fix}")
        if parts[-2] not in CLASSES:
            raise DataError(
                f"{where}: unknown class folder {parts[-2]!r} (in {name!r}); class folders must be exactly "
                f"{', '.join(CLASSES)}"
            )
        prefixes.add(parts[:-3])
        plan.append((name, parts[-3], CLASSES.index(parts[-2])))
    if not plan:
        raise DataError(f"{where}: no images found; {fix}")
    if len({m for m, _, _ in plan}) != len(plan):
        dup = sorted(m for m, n in Counter(m for m, _, _ in plan).items() if n > 1)[0]
        raise DataError(f"{where}: member {dup!r} appears more than once; rebuild the zip without duplicates")
    if len(prefixes) > 1:
        shown = ", ".join(sorted("/".join(p) or "<top level>" for p in prefixes)[:4])
        raise DataError(f"{where}: images under several roots ({shown}); keep exactly one train/ + test/ tree")
    counts = {(s, c): 0 for s in _SPLITS for c in range(NUM_CLASSES)}
    for _, split, label in plan:
        counts[(split, label)] += 1
    empty = [f"{s}/{CLASSES[c]}" for (s, c), n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{where}: no images in {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}; {fix}")
    # Deterministic order: split, label, then file name (zip member order is arbitrary).
    plan.sort(key=lambda t: (_SPLITS.index(t[1]), t[2], t[0]))
    return plan


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _decode_one(data: bytes, member: str, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            size, mode = img.size, img.mode
            arr = np.asarray(img) if (size == (IMAGE_SIZE, IMAGE_SIZE) and mode == "RGB") else None
    except Exception as exc:
        raise DataError(f"{where}: {member!r} does not decode as an image ({type(exc).__name__}: {exc}); re-copy the dataset or remove that file") from exc
    if size != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{where}: {member!r} is {size[0]}x{size[1]}, expected 32x32 (CIFAR-10 size); resize or remove it")
    if arr is None:
        raise DataError(f"{where}: {member!r} has mode {mode}, expected 32x32 RGB; convert it to RGB or remove it")
    return arr.transpose(2, 0, 1)  # HWC -> CHW


def _decode_images(read, plan: list[tuple[str, str, int]], where: str, progress: bool) -> dict[str, np.ndarray]:
    """Decode every planned member into preallocated uint8 arrays; ``read(member) -> bytes``.

    Reading is sequential (zip files are not safe to read concurrently); decoding runs on 2 threads since
    Pillow releases the GIL while decoding.
    """
    from tqdm.auto import tqdm

    n = {s: sum(1 for _, split, _ in plan if split == s) for s in _SPLITS}
    xs = {s: np.empty((n[s], 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8) for s in _SPLITS}
    ys = {s: np.empty((n[s],), dtype=np.int64) for s in _SPLITS}
    slots = []
    counters = {s: 0 for s in _SPLITS}
    for member, split, label in plan:
        slots.append((member, split, counters[split], label))
        counters[split] += 1

    def work(chunk):
        for member, split, i, label, data in chunk:
            xs[split][i] = _decode_one(data, member, where)
            ys[split][i] = label
        return len(chunk)

    chunk_size = 512
    with tqdm(total=len(slots), desc=f"decoding {Path(where).name}", unit="img", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        futures = []
        for start in range(0, len(slots), chunk_size):
            chunk = [(m, s, i, lab, read(m)) for m, s, i, lab in slots[start:start + chunk_size]]
            futures.append(pool.submit(work, chunk))
            # Keep memory bounded and surface errors early: settle futures that are done.
            while futures and (futures[0].done() or len(futures) > 8):
                bar.update(futures.pop(0).result())
        for fut in futures:
            bar.update(fut.result())
    return {"train_x": xs["train"], "train_y": ys["train"], "test_x": xs["test"], "test_y": ys["test"]}


def _load_imagefolder(path: Path, *, cache_dir: Path, progress: bool) -> Splits:
    if not path.exists():
        raise DataError(f"{path}: does not exist; {_FIX_HINT}")
    if path.is_file():
        return _load_zip(path, cache_dir=cache_dir, progress=progress)
    root = _image_root(path)
    if root is None:
        raise DataError(f"{path}: no train/ or test/ folder; expected train/<class>/<image> and test/<class>/<image>")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    plan = _plan_layout(files, str(root))
    # Directory hash: one line "<relpath>\0<sha256 of file>\n" per image, sorted by relpath (see DataSource).
    h = hashlib.sha256()
    for rel in sorted(m for m, _, _ in plan):
        h.update(rel.encode("utf-8") + b"\0" + _sha256_file(root / rel).hexdigest().encode() + b"\n")
    sha = h.hexdigest()

    def prepare():
        meta = _imagefolder_meta(plan, prefix="", sha_of="sorted lines '<relpath>\\0<sha256 of file>\\n' over image files")
        return plan, meta, lambda m: (root / m).read_bytes()

    return _cached_decode(root, sha, prepare, cache_dir=cache_dir, progress=progress)


def _load_zip(path: Path, *, cache_dir: Path, progress: bool) -> Splits:
    sha = _sha256_file(path).hexdigest()
    with contextlib.ExitStack() as stack:

        def prepare():
            # Only on a cache miss: listing 60k members costs ~0.5 s, decoding them ~5-12 s.
            try:
                zf = stack.enter_context(zipfile.ZipFile(path))
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(
                    f"{path}: not a valid zip ({type(exc).__name__}: {exc}); re-copy it or point GENROBUST_DATA to a "
                    f"valid CIFAR-10 zip, image folder or {_BATCHES_DIR} folder"
                ) from exc
            plan = _plan_layout(zf.namelist(), str(path))
            meta = _imagefolder_meta(plan, prefix="/".join(plan[0][0].split("/")[:-3]), sha_of="zip file")

            def read(member: str) -> bytes:
                try:
                    return zf.read(member)
                except (zipfile.BadZipFile, OSError, RuntimeError) as exc:  # CRC mismatch, truncated, encrypted
                    raise DataError(f"{path}: member {member!r} is unreadable ({exc}); re-copy the zip") from exc

            return plan, meta, read

        return _cached_decode(path, sha, prepare, cache_dir=cache_dir, progress=progress)


def _imagefolder_meta(plan, *, prefix: str, sha_of: str) -> dict:
    counts = {s: [0] * NUM_CLASSES for s in _SPLITS}
    for _, split, label in plan:
        counts[split][label] += 1
    lossy = any(_suffix(m) in _JPEG_EXTS for m, _, _ in plan)
    return {
        # JPEG files are a lossy re-encoding of CIFAR-10: results on them must say "JPEG copy".
        "name": NAME_JPEG if lossy else NAME_IMAGEFOLDER,
        "sha256_of": sha_of,
        "layout_prefix": prefix,
        "counts_train": counts["train"],
        "counts_test": counts["test"],
        "lossy_jpeg": lossy,
    }


def _cached_decode(path: Path, sha: str, prepare, *, cache_dir: Path, progress: bool) -> Splits:
    """Arrays from ``<cache_dir>/cifar10-<sha[:16]>.npz`` if valid, else ``prepare() -> (plan, meta, read)``,
    decode and cache. The cache also stores ``meta`` so a hit needs neither the zip listing nor decoding."""
    cache_file = cache_dir / f"cifar10-{sha[:16]}.npz"
    cached = _read_cache(cache_file, sha)
    if cached is not None:
        arrays, meta = cached
    else:
        plan, meta, read = prepare()
        arrays = _decode_images(read, plan, str(path), progress)
        _write_cache(cache_file, arrays, sha, meta)
    meta = dict(meta)
    name = meta.pop("name")
    source = DataSource(
        kind="imagefolder", name=name, path=str(path), sha256=sha, synthetic=False,
        extra=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in meta.items()),
    )
    return Splits(**{k: torch.from_numpy(v) for k, v in arrays.items()}, source=source)


_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y")


def _read_cache(cache_file: Path, sha: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, meta) from the cache, or None if absent; a corrupt/stale cache is deleted with a warning."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            if header.get("sha256") != sha or header.get("version") != _CACHE_VERSION:
                raise ValueError(f"cache is for sha256 {header.get('sha256')!r} version {header.get('version')!r}")
            arrays = {k: npz[k] for k in _CACHE_KEYS}
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


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray], sha: str, meta: dict) -> None:
    """Atomic write: temp file in the same directory, fsync, os.replace; the temp file is removed on failure."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".tmp")
    except OSError as exc:
        warnings.warn(f"cannot write cache in {cache_file.parent} ({exc}); continuing without a cache", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            header = {"sha256": sha, "version": _CACHE_VERSION, "meta": meta}
            np.savez(f, header=np.array(json.dumps(header)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is meant to be shareable
        os.replace(tmp, cache_file)
    except BaseException:  # including KeyboardInterrupt: never leave a partial file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----------------------------------------------------------------------------------------------- synthetic

# Ten visually distinct (foreground, background) RGB pairs, one per class.
_SYN_COLOURS = (
    ((230, 40, 40), (20, 20, 90)),
    ((40, 200, 60), (90, 20, 20)),
    ((50, 90, 230), (200, 200, 60)),
    ((240, 220, 40), (30, 90, 30)),
    ((230, 120, 20), (20, 120, 150)),
    ((200, 50, 200), (40, 40, 40)),
    ((40, 220, 220), (120, 30, 90)),
    ((250, 250, 250), (100, 60, 20)),
    ((20, 20, 20), (180, 180, 200)),
    ((150, 90, 40), (60, 160, 110)),
)
_SYN_SHAPES = ("square", "disk", "hstripes", "vstripes", "cross", "triangle", "ring", "diagstripes", "checker", "xcross")
_SYN_NOISE_STD = 12.0  # gaussian pixel noise, in 0..255 units
_SYN_COLOUR_JITTER = 25  # per-image uniform colour jitter, +/- in 0..255 units


def make_synthetic(
    n_train_per_class: int = 500, n_test_per_class: int = 100, *, seed: int = 0, num_classes: int = 10
) -> Splits:
    """A learnable class-conditional stand-in for CIFAR-10 (tests, CI smoke runs). NOT CIFAR-10.

    Class c = a shape (square, disk, stripes, cross, ...) in foreground colour c on background colour c, at a
    random centre (8..24 px) and half-size (5..11 px), with per-image colour jitter and gaussian pixel noise.
    uint8 (N, 3, 32, 32), class-major order; deterministic in ``seed`` (local torch.Generator; the train set
    is drawn first, so it does not depend on ``n_test_per_class``).
    """
    if not 1 <= num_classes <= len(_SYN_SHAPES):
        raise DataError(f"make_synthetic: num_classes={num_classes}; use 1..{len(_SYN_SHAPES)}")
    if n_train_per_class < 0 or n_test_per_class < 0:
        raise DataError(f"make_synthetic: negative size ({n_train_per_class}, {n_test_per_class}); use counts >= 0")
    g = torch.Generator().manual_seed(int(seed))
    train_x, train_y = _synthetic_split(n_train_per_class, num_classes, g)
    test_x, test_y = _synthetic_split(n_test_per_class, num_classes, g)
    params = (
        ("generator", "genrobust.data.make_synthetic v1"),
        ("seed", int(seed)),
        ("n_train_per_class", int(n_train_per_class)),
        ("n_test_per_class", int(n_test_per_class)),
        ("num_classes", int(num_classes)),
        ("shapes", tuple(_SYN_SHAPES[:num_classes])),
        ("noise_std", _SYN_NOISE_STD),
        ("colour_jitter", _SYN_COLOUR_JITTER),
    )
    source = DataSource(kind="synthetic", name=NAME_SYNTHETIC, path=None, sha256=None, synthetic=True, extra=params)
    return Splits(train_x, train_y, test_x, test_y, source)


def _synthetic_split(n_per_class: int, num_classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32)
    yy, xx = coords.view(1, -1, 1), coords.view(1, 1, -1)  # (1, 32, 1), (1, 1, 32) pixel rows / columns
    for c in range(num_classes):
        n = n_per_class
        cy = torch.randint(8, 25, (n, 1, 1), generator=g).float()
        cx = torch.randint(8, 25, (n, 1, 1), generator=g).float()
        r = torch.randint(5, 12, (n, 1, 1), generator=g).float()  # half-size in pixels
        dy, dx = yy - cy, xx - cx  # (n, 32, 32) offsets from the centre
        inside = (dy.abs() <= r) & (dx.abs() <= r)
        shape = _SYN_SHAPES[c]
        if shape == "square":
            mask = inside
        elif shape == "disk":
            mask = dy**2 + dx**2 <= r**2
        elif shape == "hstripes":
            mask = inside & ((yy.long() // 2) % 2 == 0)
        elif shape == "vstripes":
            mask = inside & ((xx.long() // 2) % 2 == 0)
        elif shape == "cross":
            mask = inside & ((dy.abs() <= 1.5) | (dx.abs() <= 1.5))
        elif shape == "triangle":
            mask = inside & (dx.abs() <= (dy + r) / 2)
        elif shape == "ring":
            d2 = dy**2 + dx**2
            mask = (d2 <= r**2) & (d2 >= (r - 3).clamp(min=1) ** 2)
        elif shape == "diagstripes":
            mask = inside & (((yy + xx).long() // 2) % 2 == 0)
        elif shape == "checker":
            mask = inside & (((yy.long() // 3) + (xx.long() // 3)) % 2 == 0)
        else:  # xcross
            mask = inside & (((dy - dx).abs() <= 1.5) | ((dy + dx).abs() <= 1.5))
        fg_base, bg_base = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in _SYN_COLOURS[c])
        jitter = lambda: torch.randint(-_SYN_COLOUR_JITTER, _SYN_COLOUR_JITTER + 1, (n, 3, 1, 1), generator=g).float()
        fg, bg = fg_base + jitter(), bg_base + jitter()
        img = torch.where(mask.unsqueeze(1), fg, bg)  # (n, 3, 32, 32)
        img = img + _SYN_NOISE_STD * torch.randn(img.shape, generator=g)
        xs.append(img.round().clamp(0, 255).to(torch.uint8))
        ys.append(torch.full((n,), c, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


# ----------------------------------------------------------------------------------------------- splits


def _check_labels(y: torch.Tensor, fn: str) -> None:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"{fn}: y must be a 1-D integer label tensor, got {getattr(y, 'dtype', type(y))} {tuple(getattr(y, 'shape', ()))}; pass Splits.train_y")


def stratified_split(y: torch.Tensor, val_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx): for each class, ``val_per_class`` indices of a seeded permutation go to val.

    int64, sorted ascending, disjoint, covering every index; the same (y, val_per_class, seed) gives the same
    split on any machine (CPU generator).
    """
    _check_labels(y, "stratified_split")
    y = y.detach().cpu()
    classes, counts = torch.unique(y, return_counts=True)
    if val_per_class < 0 or (len(counts) and val_per_class > int(counts.min())):
        smallest = int(counts.min()) if len(counts) else 0
        raise DataError(f"stratified_split: val_per_class={val_per_class} but the smallest class has {smallest} examples; use 0..{smallest}")
    g = torch.Generator().manual_seed(int(seed))
    val = []
    for c in classes.tolist():  # sorted class order keeps the generator stream deterministic
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        val.append(idx[torch.randperm(len(idx), generator=g)[:val_per_class]])
    val_idx = torch.sort(torch.cat(val)).values if val else torch.empty(0, dtype=torch.int64)
    is_val = torch.zeros(len(y), dtype=torch.bool)
    is_val[val_idx] = True
    train_idx = torch.nonzero(~is_val, as_tuple=True)[0]
    return train_idx.to(torch.int64), val_idx.to(torch.int64)


def subset_per_class(y: torch.Tensor, n_per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted int64 indices: the first ``n_per_class`` of a seeded permutation of each class (None -> all)."""
    _check_labels(y, "subset_per_class")
    y = y.detach().cpu()
    if n_per_class is None:
        return torch.arange(len(y), dtype=torch.int64)
    classes, counts = torch.unique(y, return_counts=True)
    if n_per_class < 0 or (len(counts) and n_per_class > int(counts.min())):
        smallest = int(counts.min()) if len(counts) else 0
        raise DataError(f"subset_per_class: n_per_class={n_per_class} but the smallest class has {smallest} examples; use 0..{smallest} or None for all")
    g = torch.Generator().manual_seed(int(seed))
    picked = []
    for c in classes.tolist():
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        picked.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
    return torch.sort(torch.cat(picked)).values.to(torch.int64) if picked else torch.empty(0, dtype=torch.int64)


def to_float(x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) in 0..255 -> float32 in [0, 1] on ``device`` (moved as uint8: 4x less traffic)."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        raise DataError(f"to_float: expected a uint8 image tensor, got {getattr(x, 'dtype', type(x))}; pass Splits.train_x/test_x")
    return x.to(device, non_blocking=True).float().div_(255.0)


# ----------------------------------------------------------------------------------------------- binary task


class BinaryBatches:
    """Balanced batches for the class-k detector d_k: half positives (class k), half negatives (other classes).

    Negatives follow p_0 = p_\\k: uniform over the non-k *examples* (so each other class appears in proportion
    to its frequency). One epoch = one pass over a fresh permutation of the positives; negatives are drawn
    without replacement within the epoch (if the epoch needs more negatives than exist, further independent
    permutations are appended). Yields (x_pos, x_neg), each uint8 (batch_size // 2, 3, 32, 32); with
    drop_last=False the last pair may be smaller (still equal sizes). All randomness comes from ``generator``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        k: int,
        batch_size: int,
        *,
        generator: torch.Generator,
        drop_last: bool = True,
    ):
        _check_labels(y, "BinaryBatches")
        if len(x) != len(y):
            raise DataError(f"BinaryBatches: x has {len(x)} images but y has {len(y)} labels; pass matching x and y")
        if batch_size < 2 or batch_size % 2:
            raise DataError(f"BinaryBatches: batch_size={batch_size} must be even and >= 2 (half positives, half negatives)")
        if not isinstance(generator, torch.Generator):
            raise DataError("BinaryBatches: generator must be a torch.Generator; pass torch.Generator().manual_seed(seed)")
        y_cpu = y.detach().cpu()
        self.pos_idx = torch.nonzero(y_cpu == k, as_tuple=True)[0]
        self.neg_idx = torch.nonzero(y_cpu != k, as_tuple=True)[0]
        if len(self.pos_idx) == 0 or len(self.neg_idx) == 0:
            raise DataError(
                f"BinaryBatches: class {k} has {len(self.pos_idx)} positives and {len(self.neg_idx)} negatives; "
                f"both must be > 0 (check k and the labels)"
            )
        self.x, self.k, self.batch_size, self.half = x, int(k), int(batch_size), int(batch_size) // 2
        self.generator, self.drop_last = generator, drop_last

    def __len__(self) -> int:
        n_pos = len(self.pos_idx)
        return n_pos // self.half if self.drop_last else math.ceil(n_pos / self.half)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g, half = self.generator, self.half
        gdev = g.device
        pos = self.pos_idx[torch.randperm(len(self.pos_idx), generator=g, device=gdev).cpu()]
        n_batches = len(self)
        n_pos_used = n_batches * half if self.drop_last else len(pos)
        perms, have = [], 0
        while have < n_pos_used:
            perms.append(self.neg_idx[torch.randperm(len(self.neg_idx), generator=g, device=gdev).cpu()])
            have += len(self.neg_idx)
        neg = torch.cat(perms) if perms else self.neg_idx[:0]
        idx_device = self.x.device
        for b in range(n_batches):
            lo, hi = b * half, min((b + 1) * half, n_pos_used)
            yield self.x[pos[lo:hi].to(idx_device)], self.x[neg[lo:hi].to(idx_device)]


# ----------------------------------------------------------------------------------------------- augmentation


def augment(x: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Per-image random augmentation of uint8 (N, 3, 32, 32) -> uint8 (N, 3, 32, 32).

    * ``"none"``: returns ``x`` itself (no copy).
    * ``"crop_flip"``: zero-pad 4 px (as torchvision's RandomCrop(32, padding=4)), random 32x32 crop, horizontal
      flip with p=0.5; vectorized over the batch.
    * ``"autoaugment_cutout"``: the standard CIFAR pipeline of the AutoAugment paper: crop_flip, then
      torchvision AutoAugment(CIFAR10 policy) per image, then Cutout: one 16x16 square set to 0 (black, in
      uint8 pixel space) at a uniformly random centre per image, clipped at the borders.

    All randomness comes from ``generator``; AutoAugment samples from the global torch RNG, so it runs inside
    ``torch.random.fork_rng`` seeded from ``generator``: the caller's global RNG state is left untouched.
    """
    if policy not in AUGMENTATIONS:
        raise DataError(f"unknown augmentation policy {policy!r}; use one of {', '.join(AUGMENTATIONS)}")
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"augment: expected uint8 (N, 3, H, W) images, got {getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}; pass Splits.train_x")
    if policy == "none":
        return x
    out = _crop_flip(x, generator)
    if policy == "autoaugment_cutout":
        out = _autoaugment(out, generator)
        out = _cutout(out, generator, size=16)
    return out


def _rand_ints(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)


def _crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # zeros, (N, 3, H+2p, W+2p)
    oy = _rand_ints(2 * pad + 1, n, generator, x.device)  # crop offsets in 0..2p
    ox = _rand_ints(2 * pad + 1, n, generator, x.device)
    flip = _rand_ints(2, n, generator, x.device).bool()
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H) source rows
    ar = torch.arange(w, device=x.device)
    cols = ox[:, None] + torch.where(flip[:, None], w - 1 - ar, ar)  # (N, W) source columns, reversed if flipped
    out = torch.gather(padded, 2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return torch.gather(out, 3, cols[:, None, None, :].expand(n, c, h, w))


def _autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy

    aa = AutoAugment(AutoAugmentPolicy.CIFAR10)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    # AutoAugment draws its parameters from the global *CPU* generator (even for CUDA tensors); seed only that
    # one (torch.manual_seed would also reseed CUDA) inside fork_rng, which restores it afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return torch.stack([aa(img) for img in x])  # per image: AutoAugment on a batch would share one op


def _cutout(x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    n, _, h, w = x.shape
    cy = _rand_ints(h, n, generator, x.device)[:, None]
    cx = _rand_ints(w, n, generator, x.device)[:, None]
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (ys >= cy - size // 2) & (ys < cy + size - size // 2)  # (N, H); out-of-image part is just clipped
    in_x = (xs >= cx - size // 2) & (xs < cx + size - size // 2)  # (N, W)
    mask = in_y[:, :, None] & in_x[:, None, :]  # (N, H, W)
    return x.masked_fill(mask[:, None], 0)
