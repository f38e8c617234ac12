"""Numbers from features: mean and covariance, Fréchet distance, FID with its full-rank flag, KID (clean-fid's
kernel_distance on the same features)

FID and KID as numbers from features: the mean and covariance of a feature set (:class:`Stats`), the Fréchet
distance, FID with its comparability flag (:class:`FIDValue`), KID; the errors and warnings of the FID modules.
numpy only: no network, no disk.

Fréchet distance (:func:`frechet_distance`): d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), with
tr(sqrt(S1 S2)) = sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1))) -- symmetric eigenproblems only (``numpy.linalg.eigh``),
stable for singular covariances and independent of ``scipy.linalg.sqrtm``, whose ``disp`` argument (used by
pytorch-fid 0.3.0) is deprecated in SciPy 1.17 and removed in 1.18. :func:`fid` takes the cheapest exact route
(:func:`frechet_distance_stats`): for a set of n <= 2048 samples an n x n eigenproblem, otherwise sqrt(S_ref)
computed once per reference and one 2048 x 2048 symmetric eigenvalue problem per set.

Sample size: a covariance of N samples has rank <= N - 1, so with N <= 2048 it is singular (a warning,
:class:`FIDWarning`, and ``FIDValue.full_rank`` False). FID is biased upward at small N, so numbers are
comparable only at equal N and equal reference; the paper computes FID 'between the training samples and the
generated samples' (Sec. 3.3.2) and states no N.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# pytorch-fid's pool3 features: (N, 2048)
FEATURE_DIM = 2048


class FIDError(RuntimeError):
    """FID cannot be computed as asked (no weights, bad input); the message says how to fix it."""


class FIDWarning(UserWarning):
    """An FID that is computable but not comparable (singular covariance: too few samples), or an FID cache file
    that was corrupt and is computed again."""


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
            self._sqrt = psd_sqrt(self.sigma)
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




def psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clipped at 0 against rounding)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def sum_sqrt_eigs(m: np.ndarray) -> float:
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
    r = psd_sqrt(s1) if sqrt_sigma1 is None else sqrt_sigma1
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * sum_sqrt_eigs(r @ s2 @ r))


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
        tr_covmean = sum_sqrt_eigs(c @ other.sigma @ c.T / (small.n - 1))
    else:
        r = a.sqrt_sigma()
        tr_covmean = sum_sqrt_eigs(r @ b.sigma @ r)
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
