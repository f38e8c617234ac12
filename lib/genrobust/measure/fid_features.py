"""FID Inception features of uint8 images (:class:`Inception`, :func:`inception`) and their on-disk caches
(:func:`cached_features`, :func:`reference_statistics`).

Preprocessing is pytorch-fid's (``pytorch_fid.inception.InceptionV3`` with the FID-specific blocks of
``fid_inception_v3``; the network: :mod:`genrobust.measure.fid_network`): uint8 images (N, 3, H, W) -> float in
[0, 1] -> bilinear resize to 299 x 299 (``align_corners=False``) -> 2x - 1 -> Inception up to the final average pool
-> (N, 2048) features. Generated images are quantized to uint8 first (:func:`quantize`), as when they are saved as
PNG, so real and generated sets go through the same path.

Caches (under ``genrobust.store.paths.cache_dir() / "fid"``, read, verified and written atomically by the one cache
mechanism, :class:`genrobust.store.cached.CachedFile`; a corrupt file warns (FIDWarning), is deleted and computed
again): reference statistics (mu, sigma) keyed by the data's sha256, the split, the reference subset's size and seed
and the network's identity (:func:`reference_statistics`); features of any uint8 image set keyed by the sha256 of
its bytes and the network's identity (:func:`cached_features`), so re-running a deterministic notebook costs no
Inception passes.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..store.cached import CachedFile
from ..store.paths import cache_dir
from .fid_network import network
from .fid_stats import FEATURE_DIM, FIDError, FIDWarning, Stats, statistics
from .fid_weights import Weights, find_weights

# Bump when preprocessing or feature extraction changes: it is part of every cache key.
PREPROCESS_VERSION = "pytorch-fid-0.3-bilinear299-v1"


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] (N, 3, H, W) -> uint8 0..255 (round to nearest), as when saved to PNG."""
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise FIDError(f"quantize: expected float images in [0, 1] or uint8, got {x.dtype}")
    return (x.detach().float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu()



class Inception:
    """Pool3 features of uint8 images through pytorch-fid's InceptionV3.

    Execution options that change features only by float rounding (< 1e-4; not part of cache keys), both on by
    default because they are the fastest correct path on CPU (benchmarks/bench_fid.py): ``channels_last`` (NHWC
    memory layout) and ``fold_bn`` (:func:`genrobust.measure.fid_network.fold_batchnorm`). Counts the images it
    pushed through the network and the seconds it took (``images``, ``seconds``, ``images_per_s``): cache hits are
    not counted.
    """

    def __init__(self, net: nn.Module, weights: Weights, *, channels_last: bool = True, fold_bn: bool = False,
                 batch_size: int = 50, device="cpu"):
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.fold_bn = fold_bn
        self.net = net.to(self.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.weights = weights
        self.batch_size = int(batch_size)
        self.images, self.seconds = 0, 0.0

    @property
    def key(self) -> str:
        """Identity of the feature map for cache keys: weights file hash + preprocessing version."""
        return f"{self.weights.sha256}|{PREPROCESS_VERSION}"

    @property
    def images_per_s(self) -> Optional[float]:
        return self.images / self.seconds if self.seconds > 0 else None

    def describe(self) -> dict:
        return {"weights": self.weights.origin, "weights_kind": self.weights.kind,
                "weights_path": None if self.weights.path is None else str(self.weights.path),
                "weights_sha256": self.weights.sha256, "preprocess": PREPROCESS_VERSION,
                "channels_last": self.channels_last, "fold_bn": self.fold_bn, "batch_size": self.batch_size,
                "device": str(self.device),
                "torch_threads": torch.get_num_threads()}

    @torch.inference_mode()
    def __call__(self, x_uint8: torch.Tensor, *, progress: bool = False, desc: str = "Inception") -> np.ndarray:
        """x_uint8: (N, 3, H, W) uint8 -> (N, 2048) float32 features."""
        from tqdm.auto import tqdm
        if not isinstance(x_uint8, torch.Tensor) or x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4 \
                or x_uint8.shape[1] != 3:
            raise FIDError(f"Inception features: expected uint8 images (N, 3, H, W), got "
                           f"{getattr(x_uint8, 'dtype', type(x_uint8))} {tuple(getattr(x_uint8, 'shape', ()))}; "
                           "use fid.quantize() on float images")
        t0 = time.perf_counter()
        out = np.empty((len(x_uint8), FEATURE_DIM), dtype=np.float32)
        for i in tqdm(range(0, len(x_uint8), self.batch_size), disable=not progress, desc=desc, leave=False):
            xb = x_uint8[i:i + self.batch_size].to(self.device).float().div_(255.0)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            f = self.net(xb)[0]  # (n, 2048, 1, 1)
            out[i:i + len(xb)] = f.reshape(len(xb), FEATURE_DIM).float().cpu().numpy()
        self.images += len(x_uint8)
        self.seconds += time.perf_counter() - t0
        return out



def inception(source: str = "auto", *, channels_last: bool = True, fold_bn: bool = True, batch_size: int = 50,
              device="cpu") -> Inception:
    """The FID feature extractor (network built once per process, weights file and fold_bn)."""
    w = find_weights(source)
    return Inception(network(w, fold_bn=fold_bn), w, channels_last=channels_last, fold_bn=fold_bn,
                     batch_size=batch_size, device=device)


# ---------------------------------------------------------------------------------------------------------------
# Caches
def _fid_cache() -> Path:
    return cache_dir() / "fid"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cache_file(path: Path, read, write) -> CachedFile:
    return CachedFile(path, read, write, what="FID cache file", category=FIDWarning)


def cached_features(extractor: Inception, x_uint8: torch.Tensor, *, cache: bool = True, progress: bool = False,
                    desc: str = "Inception") -> np.ndarray:
    """Features of x_uint8, content-addressed on disk: key = sha256 of the image bytes and shape + the
    extractor's identity. A deterministic re-run (nbval after a notebook run) costs no Inception pass."""
    if not cache:
        return extractor(x_uint8, progress=progress, desc=desc)
    x = x_uint8.contiguous().cpu()
    digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()

    def read(p: Path) -> np.ndarray:
        f = np.load(p, allow_pickle=False)
        if f.shape != (len(x), FEATURE_DIM):
            raise ValueError(f"features of shape {f.shape}, expected {(len(x), FEATURE_DIM)}")
        return f

    entry = _cache_file(_fid_cache() / f"feat-{_key(digest, tuple(x.shape), extractor.key)}.npy", read, np.save)
    return entry.get_or_compute(lambda: extractor(x, progress=progress, desc=desc))


def reference_features(extractor: Inception, x_uint8: torch.Tensor, *, n: int | None, seed: int,
                       cache: bool = True, progress: bool = False) -> np.ndarray:
    """Features (n, 2048) of the seeded random reference subset (the first n of a seeded permutation of x_uint8;
    None: all), through :func:`cached_features` (the FID statistics and KID both use these)."""
    total = len(x_uint8)
    n = total if n is None else n
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:n]
    return cached_features(extractor, x_uint8[idx], cache=cache, progress=progress, desc="Inception: reference")


def reference_statistics(extractor: Inception, x_uint8: torch.Tensor, *, n: int | None, seed: int,
                         meta: dict | None = None, progress: bool = False) -> Stats:
    """Statistics of a seeded random subset of n reference images (None: all), cached on disk.

    The subset is the first n of a seeded permutation of x_uint8. The cache file ``<cache>/fid/ref-<hash>.npz`` is
    keyed by the sha256 of the reference images' bytes (the data and its split, whatever their source), n, seed
    and the extractor's identity; ``meta`` (e.g. the data's name and file sha256) is stored beside the numbers."""
    total = len(x_uint8)
    if n is not None and not 2 <= n <= total:
        raise FIDError(f"reference subset of {n} images out of {total}; use 2..{total} or None for all")
    n = total if n is None else n
    digest = hashlib.sha256(x_uint8.contiguous().cpu().numpy().tobytes()).hexdigest()
    key = {"images_sha256": digest, "shape": list(x_uint8.shape), "n": n, "seed": int(seed),
           "extractor": extractor.key}

    def read(p: Path) -> Stats:
        with np.load(p, allow_pickle=False) as z:
            stored = json.loads(str(z["meta"]))
            if stored.get("key") != key:
                raise ValueError("its key is not the one asked for")
            return Stats(z["mu"], z["sigma"], int(z["n"]), {**stored, "of": total, "cached": True, "path": str(p)})

    def write(fh, st: Stats) -> None:
        np.savez(fh, mu=st.mu, sigma=st.sigma, n=st.n, meta=json.dumps(st.meta, default=str))

    entry = _cache_file(_fid_cache() / f"ref-{_key(key)}.npz", read, write)
    cached = entry.get()
    if cached is not None:
        return cached
    feats = reference_features(extractor, x_uint8, n=n, seed=seed, progress=progress)
    st = entry.put(statistics(feats, {"key": key, "meta": meta or {}}))
    st.meta.update(of=total, cached=False, path=str(entry.path))
    return st
