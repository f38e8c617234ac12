"""Image folder / zip decoding, layout validation.

CIFAR-10 as an image folder or zip (``[prefix/]train/<class>/<image>``, ``[prefix/]test/<class>/<image>``):
layout validation, parallel decoding, and the decoded-array cache (decoding 60k JPEGs takes seconds; a cache hit
needs neither the zip listing nor decoding)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .base import (BATCHES_DIR, CLASSES, FIX_HINT, IMAGE_EXTS, IMAGE_SIZE, JPEG_EXTS, NAME_IMAGEFOLDER, NAME_JPEG,
                   NUM_CLASSES, SPLITS, DataError, DataSource, Splits, sha256_file)
from .cache import cache_entry


def image_root(path: Path) -> Path | None:
    """The directory holding train/ and test/: ``path`` itself or its single subdirectory."""
    if (path / "train").is_dir() or (path / "test").is_dir():
        return path
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")] if path.is_dir() else []
    if len(subdirs) == 1 and ((subdirs[0] / "train").is_dir() or (subdirs[0] / "test").is_dir()):
        return subdirs[0]
    return None


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
        if _suffix(parts[-1]) not in IMAGE_EXTS:
            continue
        if len(parts) < 3 or parts[-3] not in SPLITS:
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
    counts = {(s, c): 0 for s in SPLITS for c in range(NUM_CLASSES)}
    for _, split, label in plan:
        counts[(split, label)] += 1
    empty = [f"{s}/{CLASSES[c]}" for (s, c), n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{where}: no images in {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}; {fix}")
    # Deterministic order: split, label, then file name (zip member order is arbitrary).
    plan.sort(key=lambda t: (SPLITS.index(t[1]), t[2], t[0]))
    return plan


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _decode_one(data: bytes, member: str, where: str) -> np.ndarray:
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
    n = {s: sum(1 for _, split, _ in plan if split == s) for s in SPLITS}
    xs = {s: np.empty((n[s], 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8) for s in SPLITS}
    ys = {s: np.empty((n[s],), dtype=np.int64) for s in SPLITS}
    slots = []
    counters = {s: 0 for s in SPLITS}
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


def load_imagefolder(path: Path, *, cache_dir: Path, progress: bool) -> Splits:
    if not path.exists():
        raise DataError(f"{path}: does not exist; {FIX_HINT}")
    if path.is_file():
        return _load_zip(path, cache_dir=cache_dir, progress=progress)
    root = image_root(path)
    if root is None:
        raise DataError(f"{path}: no train/ or test/ folder; expected train/<class>/<image> and test/<class>/<image>")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    plan = _plan_layout(files, str(root))
    # Directory hash: one line "<relpath>\0<sha256 of file>\n" per image, sorted by relpath (see DataSource).
    h = hashlib.sha256()
    for rel in sorted(m for m, _, _ in plan):
        h.update(rel.encode("utf-8") + b"\0" + sha256_file(root / rel).hexdigest().encode() + b"\n")
    sha = h.hexdigest()

    def prepare():
        meta = _imagefolder_meta(plan, prefix="", sha_of="sorted lines '<relpath>\\0<sha256 of file>\\n' over image files")
        return plan, meta, lambda m: (root / m).read_bytes()

    return _cached_decode(root, sha, prepare, cache_dir=cache_dir, progress=progress)


def _load_zip(path: Path, *, cache_dir: Path, progress: bool) -> Splits:
    sha = sha256_file(path).hexdigest()
    with contextlib.ExitStack() as stack:

        def prepare():
            # Only on a cache miss: listing 60k members costs ~0.5 s, decoding them ~5-12 s.
            try:
                zf = stack.enter_context(zipfile.ZipFile(path))
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(
                    f"{path}: not a valid zip ({type(exc).__name__}: {exc}); re-copy it or point GENROBUST_DATA to a "
                    f"valid CIFAR-10 zip, image folder or {BATCHES_DIR} folder"
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
    counts = {s: [0] * NUM_CLASSES for s in SPLITS}
    for _, split, label in plan:
        counts[split][label] += 1
    lossy = any(_suffix(m) in JPEG_EXTS for m, _, _ in plan)
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
    def decode() -> tuple[dict, dict]:
        plan, meta, read = prepare()
        return _decode_images(read, plan, str(path), progress), meta

    arrays, meta = cache_entry(cache_dir / f"cifar10-{sha[:16]}.npz", sha).get_or_compute(decode)
    meta = dict(meta)
    name = meta.pop("name")
    source = DataSource(
        kind="imagefolder", name=name, path=str(path), sha256=sha, synthetic=False,
        extra=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in meta.items()),
    )
    return Splits(**{k: torch.from_numpy(v) for k, v in arrays.items()}, source=source)
