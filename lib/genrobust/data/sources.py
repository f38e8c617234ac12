"""Where CIFAR-10 comes from: locating it (:func:`default_search_paths`) and loading it by source (:func:`load`).

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
* ``"synthetic"``: :func:`~genrobust.data.synthetic.make_synthetic` (its sizes and seed: a
  :class:`~genrobust.data.synthetic.SyntheticSpec`), a learnable stand-in for tests and CI smoke runs. It is never
  used as a fallback: asking for CIFAR-10 and not finding it raises :class:`DataError`.
* ``"auto"``: the first CIFAR-10 found in the order of :func:`default_search_paths`.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

from ..store.paths import cache_dir as default_cache_dir
from ..store.paths import project_root as default_project_root
from .base import BATCHES_DIR, FIX_HINT, SOURCES, DataError, Splits
from .cifar_batches import load_batches
from .imagefolder import image_root, load_imagefolder
from .synthetic import SyntheticSpec


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
        ("batches", root / "data" / BATCHES_DIR),
        ("imagefolder", root / "data" / "cifar10-jpeg.zip"),
        ("imagefolder", root / "data" / "cifar10"),
        ("imagefolder", (root / ".." / "shared" / "data" / "cifar10-jpeg.zip").resolve()),
        ("download", root / "data"),
    ]
    return paths


def _detect_kind(path: Path) -> tuple[str, Path]:
    """Recognise a CIFAR-10 location by its content: returns ("batches" | "imagefolder", path to load)."""
    if not path.exists():
        raise DataError(f"{path}: does not exist; {FIX_HINT}")
    if path.is_file():
        if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
            return "imagefolder", path
        raise DataError(f"{path}: is a file but not a zip; {FIX_HINT}")
    if (path / "data_batch_1").is_file() or (path / "batches.meta").is_file():
        return "batches", path
    if (path / BATCHES_DIR).is_dir():
        return "batches", path / BATCHES_DIR
    if image_root(path) is not None:
        return "imagefolder", path
    if (path / "cifar10-jpeg.zip").is_file():
        return "imagefolder", path / "cifar10-jpeg.zip"
    raise DataError(
        f"{path}: no CIFAR-10 found (expected data_batch_* files, a {BATCHES_DIR} folder, or train/ and test/ "
        f"class folders); {FIX_HINT}"
    )


def load(
    source: str,
    path: str | os.PathLike | None = None,
    *,
    project_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    synthetic: SyntheticSpec | None = None,
) -> Splits:
    """Dispatch on ``source`` in ``SOURCES``: CIFAR-10 through :func:`load_cifar10` (path, project_root, cache_dir,
    download, progress), or the synthetic stand-in drawn as ``synthetic`` says (default :class:`SyntheticSpec`();
    only for source 'synthetic')."""
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
    if source == "synthetic":
        if path is not None:
            raise DataError(f"source 'synthetic' takes no path (got {path!r}); drop path= or pick another source")
        return (SyntheticSpec() if synthetic is None else synthetic).make()
    if synthetic is not None:
        raise DataError(f"synthetic= only applies to source 'synthetic' (got source {source!r}); drop synthetic= "
                        "or use source 'synthetic'")
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
    root = default_project_root() if project_root is None else Path(project_root).resolve()
    cache = Path(cache_dir).expanduser().resolve() if cache_dir is not None else default_cache_dir(root)

    if path is not None:
        p = Path(path).expanduser().resolve()
        if source == "auto":
            kind, p = _detect_kind(p)
        else:
            kind = source
        if kind == "batches":
            return load_batches(p, download=download)
        return load_imagefolder(p, cache_dir=cache, progress=progress)

    if source == "batches":
        return load_batches(root / "data" / BATCHES_DIR, download=download)

    tried: list[str] = []
    for kind, candidate in default_search_paths(root):
        if source == "imagefolder" and kind not in ("imagefolder", "detect"):
            continue
        if kind == "download":
            if not download:
                tried.append(f"torchvision download into {candidate} (skipped: download=False)")
                continue
            try:
                return load_batches(candidate / BATCHES_DIR, download=True)
            except DataError as exc:
                tried.append(f"torchvision download into {candidate} ({exc})")
                continue
        if kind == "detect":
            # The user named this location explicitly: if it is broken, say so rather than use another copy.
            kind, candidate = _detect_kind(candidate)
            if kind == "batches" and source == "imagefolder":
                raise DataError(f"GENROBUST_DATA={candidate} holds python batches, not images; use source 'batches' or 'auto'")
            if kind == "batches":
                return load_batches(candidate, download=False)
            return load_imagefolder(candidate, cache_dir=cache, progress=progress)
        if not candidate.exists():
            tried.append(f"{candidate} (not found)")
            continue
        try:
            if kind == "batches":
                return load_batches(candidate, download=False)
            return load_imagefolder(candidate, cache_dir=cache, progress=progress)
        except DataError as exc:
            warnings.warn(f"skipping broken CIFAR-10 candidate: {exc}", stacklevel=2)
            tried.append(f"{candidate} ({exc})")
    raise DataError(
        f"no CIFAR-10 found for source {source!r}; tried: " + "; ".join(f"[{i + 1}] {t}" for i, t in enumerate(tried))
        + f"; fix: {FIX_HINT} (or enable download=True with internet access)"
    )
