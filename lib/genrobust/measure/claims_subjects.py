"""The subjects the verdict engine judges, one statistical test each: paired exact McNemar, an attack's gap against
a tolerance, Fig. 1's slope over eps, a t test over training seeds, FID's half-subsampling replicates.

Two classifiers on the same images: exact McNemar on per-example flags (:func:`mcnemar_subject`).
An attack against the worst case over every attack on one classifier: the worst case is at most each attack, so
the discordance is one-way by construction; the gap b / n gets its exact interval and an exact binomial test
against a stated tolerance (:func:`gap_subject`). Fig. 1's crossover: the slope of the paired gap against eps
(:func:`slope_subject`). Several training seeds: a t test over the seeds (:func:`seed_t_subject`). FID: the
half-subsampling replicates of :func:`genrobust.measure.fid.paired_subsampling` (:func:`subsample_subject`).
Two numbers measured under different attack sets are never compared (:func:`same_attacks`).

Each returns a subject: a dict of :class:`~genrobust.measure.claims_rule.Verdict`'s fields (without claim,
p_adjusted and decision) plus the effect's standard error, for :func:`~genrobust.measure.claims_rule.judge`.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from scipy.stats import beta, binom, norm
from scipy.stats import t as student_t

from ..core.stats import mcnemar
from ..core.registry import PAPER_ATTACK
from .claims_rule import ALPHA, ClaimError

__all__ = ["same_attacks", "mcnemar_interval", "mcnemar_subject", "gap_subject", "MIN_SEEDS", "seed_t_subject",
           "slope_subject", "MIN_SUBSAMPLES", "subsample_subject"]


def same_attacks(first: Iterable[str], second: Iterable[str], kinds: tuple[str, str] | None = None) -> list[str]:
    """The common attack set of two worst cases, or ClaimError when they differ. With ``kinds``, each classifier's
    own paper attack (Sec. 3.2: Eq. 11-12 or PGD-CE) counts as the same 'paper' attack."""
    def norm_(attacks, kind):
        return sorted("paper" if kind is not None and a == PAPER_ATTACK.get(kind) else a for a in attacks)
    a, b = norm_(first, kinds and kinds[0]), norm_(second, kinds and kinds[1])
    if a != b:
        raise ClaimError(f"not comparable: measured under different attack sets ({', '.join(a) or 'clean'} vs "
                         f"{', '.join(b) or 'clean'}); compare only numbers under the same attacks")
    return a


def mcnemar_interval(b: int, c: int, n: int) -> tuple[float, float]:
    """95% interval of the paired difference (b - c) / n consistent with the exact McNemar test: conditional on the
    m = b + c discordant pairs, the Clopper-Pearson interval of pi = b / m mapped to m / n x (2 pi - 1). It excludes 0
    exactly when the two-sided exact test has p < 0.05 (a Wald interval does not: with 5 of 130 images one way and
    none the other, p = 0.0625 while the Wald interval [+0.5, +7.2] points excludes 0)."""
    m = b + c
    if n <= 0:
        return (float("nan"), float("nan"))
    if m == 0:
        return (0.0, 0.0)
    lo = 0.0 if b == 0 else float(beta.ppf(ALPHA / 2, b, c + 1))
    hi = 1.0 if c == 0 else float(beta.ppf(1 - ALPHA / 2, b + 1, c))
    return (m / n * (2 * lo - 1), m / n * (2 * hi - 1))


def mcnemar_subject(first: torch.Tensor, second: torch.Tensor, subject: str, evidence: dict) -> dict:
    """Paired exact McNemar of two flag vectors on the same images (effect = acc first - acc second)."""
    n = min(len(first), len(second))
    t = mcnemar(first[:n], second[:n])
    b, c = t["n_first"], t["n_second"]
    d = t["diff"]
    # SE of the paired difference under the null at the observed discordance (at least 1 pair in n)
    disc = max(b + c, 1) / n if n else float("nan")
    return {"subject": subject, "evidence": {**evidence, "n": n, "right_first_only": b, "right_second_only": c},
            "test": "exact McNemar (paired, two-sided)", "effect": d, "ci95": mcnemar_interval(b, c, n), "p": t["p"],
            "se": math.sqrt(disc / n) if n else None, "unit": "accuracy"}


def gap_subject(paper_flags: torch.Tensor, worst_flags: torch.Tensor, subject: str, evidence: dict,
                tolerance: float) -> dict:
    """The gap between a classifier's accuracy under its paper attack and under the worst case over every attack,
    on the same images. The worst case is at most each attack, so every discordant image goes one way (right
    under the paper's attack, broken by another): c = 0 by construction, McNemar's null (b = c) cannot hold and its
    p = 2^(1 - b) calls any b >= 6 'significant'. What is estimable is the gap b / n itself: its exact
    (Clopper-Pearson) 95% interval, and an exact binomial test of gap = ``tolerance`` (two-sided: min of the two
    one-sided p, doubled), so that the data can put the gap below the tolerance (supported: the paper's attack
    finds the worst case to within it) or above it (contradicted)."""
    n = min(len(paper_flags), len(worst_flags))
    first, second = paper_flags[:n].bool(), worst_flags[:n].bool()
    b, c = int((first & ~second).sum()), int((second & ~first).sum())
    if c:
        raise ClaimError(f"{subject}: {c} image(s) right under the worst case but broken by the paper's attack; "
                         "the worst case must be at most each attack (check the evaluation record)")
    if not n:
        raise ClaimError(f"{subject}: no images")
    lo = 0.0 if b == 0 else float(beta.ppf(ALPHA / 2, b, n - b + 1))
    hi = 1.0 if b == n else float(beta.ppf(1 - ALPHA / 2, b + 1, n - b))
    above, below = float(binom.sf(b - 1, n, tolerance)), float(binom.cdf(b, n, tolerance))  # P(X >= b), P(X <= b)
    return {"subject": subject, "evidence": {**evidence, "n": n, "right_paper_only": b, "tolerance": tolerance},
            "test": f"exact binomial of the gap against a {100 * tolerance:g}-point tolerance (two-sided; "
                    "Clopper-Pearson interval)", "effect": b / n, "ci95": (lo, hi),
            "p": min(1.0, 2 * min(above, below)), "null": tolerance,
            "se": math.sqrt(tolerance * (1 - tolerance) / n), "unit": "accuracy"}


MIN_SEEDS = 3  # a t test over training seeds needs df >= 2 to have any power at Holm's levels (see seed_t_subject)


def seed_t_subject(seed_diffs: Sequence[float], effect: float, subject: str, evidence: dict, unit: str) -> dict:
    """A subject from per-training-seed differences (paired by seed): one-sample t test over the seeds, df = seeds
    - 1, t-based 95% interval. The training run is the unit of replication, so the test-image noise inside each
    seed's difference is part of its spread; a bootstrap over 5 seeds (its percentile interval covered 83% in a
    simulation, issue 39) understates that spread. Fewer than MIN_SEEDS seeds: no test (not established, noted).
    An exact sign or signed-rank test would need 6 seeds to reach p < 0.05 at all (2 / 2^5 = 0.0625)."""
    d = np.asarray(seed_diffs, dtype=np.float64)
    s = len(d)
    out = {"subject": subject, "evidence": {**evidence, "seeds": s}, "test": "t test over training seeds (paired "
           "by seed, two-sided)", "effect": float(effect), "ci95": None, "p": None, "se": None, "unit": unit}
    if s < MIN_SEEDS:
        return {**out, "note": f"{s} training seed(s); a test over seeds needs {MIN_SEEDS} or more"}
    se = float(d.std(ddof=1) / math.sqrt(s))
    if se == 0:
        return {**out, "p": 1.0 if effect == 0 else 0.0, "ci95": (float(effect), float(effect)), "se": 0.0,
                "df": s - 1}
    q = float(student_t.ppf(1 - ALPHA / 2, s - 1))
    return {**out, "ci95": (float(effect - q * se), float(effect + q * se)),
            "p": float(2 * student_t.sf(abs(effect) / se, s - 1)), "se": se, "df": s - 1}


def slope_subject(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor], eps: Sequence[float],
                  subject: str, evidence: dict) -> dict:
    """The least-squares slope, against eps, of the accuracy difference first - second measured on the same images
    at every eps of the grid (``first[j]``, ``second[j]``: (n,) flags at ``eps[j]``). Per image i the slope's
    contribution is L_i = sum_j w_j (first_ij - second_ij), w_j = (eps_j - mean eps) / sum_j (eps_j - mean eps)^2,
    so the slope is mean_i L_i and its SE sd(L) / sqrt(n) counts the dependence between the eps of one image;
    two-sided z test of slope = 0 (n in the hundreds)."""
    e = np.asarray(eps, dtype=np.float64)
    if len(e) < 2:
        raise ClaimError(f"{subject}: a slope needs two or more eps, got {list(eps)}")
    n = min(len(f) for f in (*first, *second))
    w = (e - e.mean()) / ((e - e.mean()) ** 2).sum()                               # (k,)
    d = np.stack([f[:n].double().numpy() - g[:n].double().numpy() for f, g in zip(first, second)])  # (k, n)
    contrib = w @ d                                                                # (n,)
    slope, se = float(contrib.mean()), float(contrib.std(ddof=1) / math.sqrt(n))
    p = float(2 * norm.sf(abs(slope) / se)) if se > 0 else (1.0 if slope == 0 else 0.0)
    gaps = d.mean(1)
    crossing = next((float(e[j]) for j in range(1, len(e)) if gaps[j - 1] <= 0 < gaps[j]), None)
    z975 = float(norm.ppf(1 - ALPHA / 2))
    return {"subject": subject, "evidence": {**evidence, "n": n, "eps": [float(x) for x in e],
                                             "gap_per_eps": [float(g) for g in gaps], "crosses_zero_at": crossing},
            "test": "least-squares slope over the eps grid, per-image contributions (paired, z, two-sided)",
            "effect": slope, "ci95": (slope - z975 * se, slope + z975 * se), "p": p, "se": se,
            "unit": "accuracy/eps"}


MIN_SUBSAMPLES = 200  # subsampling replicates behind a stated SE (its relative precision ~ 1 / sqrt(2 x 200) = 5%)


def subsample_subject(replicates: Sequence[float], effect: float, n: int, m: int, subject: str, evidence: dict,
                      unit: str) -> dict:
    """A subject from replicates of an effect on random subsamples of m of the n paired rows drawn without
    replacement (:func:`genrobust.measure.fid.paired_subsampling`): the delete-d jackknife's variance of the
    full-set effect, SE^2 = m / (n - m) x var(replicates) (d = n - m), a normal 95% interval effect +- 1.96 SE and
    the two-sided p of 'no difference' from z = effect / SE. Fewer than MIN_SUBSAMPLES replicates: no interval and
    no p (not established, with a note)."""
    reps = np.asarray(replicates, dtype=np.float64)
    if not 2 <= m < n:
        raise ClaimError(f"{subject}: subsample size {m} of {n} rows; it must be 2 <= m < n")
    se = math.sqrt(m / (n - m) * float(reps.var(ddof=1))) if len(reps) > 1 else None
    out = {"subject": subject, "evidence": {**evidence, "n": n, "m": m, "n_rep": len(reps)},
           "test": "paired half-subsampling over images (delete-n/2 jackknife SE, normal)", "effect": float(effect),
           "ci95": None, "p": None, "se": se, "unit": unit}
    if len(reps) < MIN_SUBSAMPLES or not se:
        return {**out, "note": f"{len(reps)} subsampling replicates stored; a stated SE, interval and test need "
                               f"{MIN_SUBSAMPLES}"}
    z975 = float(norm.ppf(1 - ALPHA / 2))
    return {**out, "ci95": (float(effect - z975 * se), float(effect + z975 * se)),
            "p": float(2 * norm.sf(abs(effect) / se))}
