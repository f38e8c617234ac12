"""Statistics behind every reported number: AUROC and its paired bootstrap, the Wilson interval of an accuracy,
and exact McNemar tests on per-example flags of two runs on the same images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import binom
from sklearn.metrics import roc_auc_score


def auroc(s_pos: torch.Tensor, s_neg: torch.Tensor) -> float:
    """Area under the ROC curve for separating positives (label 1) from negatives (label 0) by score."""
    scores = torch.cat([s_pos, s_neg]).numpy()
    labels = [1] * len(s_pos) + [0] * len(s_neg)
    if not (math.isfinite(float(scores.sum()))):
        return float("nan")
    return float(roc_auc_score(labels, scores))



def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n (well-behaved near 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))



def bootstrap_auroc(pairs, n_boot: int = 1000, seed: int = 0):
    """AUROC of each (s_pos, s_neg) pair on ``n_boot`` bootstrap resamples of the test examples: (n_boot, len(pairs)).

    All pairs must score the same positives (n) and the same negatives (m), in the same order (e.g. two models, or
    one model at several eps, on one test set): every pair sees the same resamples, so differences between columns
    are *paired*. Positives and negatives are resampled separately (AUROC conditions on the labels). A resample is
    a vector of counts w (how often each example was drawn), and AUROC_b = w_pos^T C w_neg / (n m) with
    C[i, j] = 1[s_pos_i > s_neg_j] + 0.5 * 1[s_pos_i == s_neg_j], which is exactly roc_auc_score on the resample.
    """
    pairs = [(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)) for p, q in pairs]
    if not pairs:
        return np.empty((n_boot, 0))
    n, m = len(pairs[0][0]), len(pairs[0][1])
    if any(len(p) != n or len(q) != m for p, q in pairs):
        raise ValueError("bootstrap_auroc: every pair must score the same positives and negatives (equal sizes)")
    rng = np.random.default_rng(seed)
    w_pos = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, n) draw counts
    w_neg = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)  # (B, m)
    out = np.empty((n_boot, len(pairs)))
    for j, (p, q) in enumerate(pairs):
        c = (p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :])  # (n, m)
        out[:, j] = ((w_pos @ c) * w_neg).sum(1) / (n * m)
    return out


def _discordant(base: torch.Tensor, other: torch.Tensor) -> tuple[int, int]:
    """(examples right under ``other`` only, right under ``base`` only): the pairs McNemar's test counts."""
    if base.shape != other.shape:
        raise ValueError(f"paired flags must cover the same examples, got {tuple(base.shape)} and {tuple(other.shape)}")
    return int((other & ~base).sum()), int((base & ~other).sum())


def mcnemar(first: torch.Tensor, second: torch.Tensor) -> dict:
    """Two-sided exact McNemar test of two per-example flag vectors on the same examples (e.g. two classifiers'
    robust flags on the same test images, or two attacks on one classifier): n_first = right under ``first`` only,
    n_second = the converse; p = min(1, 2 P(X <= min(n_first, n_second))), X ~ Bin(n_first + n_second, 1/2).
    Returns {n, n_first, n_second, acc_first, acc_second, diff (acc_first - acc_second), p}: a description; the
    decision (Holm over a claim's subjects, the detectable effect) is the verdict engine's (measure/claims.py)."""
    n_second, n_first = _discordant(first, second)
    m, n = n_first + n_second, len(first)
    p = 1.0 if m == 0 else min(1.0, 2 * float(binom.cdf(min(n_first, n_second), m, 0.5)))
    a, b = (float(f.float().mean()) if n else float("nan") for f in (first, second))
    return {"n": n, "n_first": n_first, "n_second": n_second, "acc_first": a, "acc_second": b, "diff": a - b, "p": p}


def paired_increase(base: torch.Tensor, other: torch.Tensor, alpha: float = 0.05) -> dict:
    """Is ``other``'s robust accuracy higher than ``base``'s by more than noise? Same examples, so a paired test:
    b = robust under other but broken under base, c = the converse; one-sided exact McNemar (binomial) test of
    b > c: p = P(X >= b), X ~ Bin(b + c, 1/2). ``significant`` when p < alpha."""
    b, c = _discordant(base, other)
    p = float(binom.sf(b - 1, b + c, 0.5)) if b > c else 1.0
    return {"b": b, "c": c, "increase": (b - c) / max(1, len(base)), "p": p, "significant": p < alpha}


