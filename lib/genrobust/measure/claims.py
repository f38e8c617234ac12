"""The verdict engine: every tested claim of the paper as a :class:`Verdict` under ONE decision rule.

A claim (an id of :data:`genrobust.core.paper.CLAIMS`) is tested by one or more :class:`Estimate`s: an effect (a
difference, first minus second, as the claim's statement defines it) with its 95% interval, a two-sided p and the
smallest effect this evidence could detect. :func:`judge` turns the estimates of one claim into verdicts:

  1. Holm's step-down adjustment over the estimates of the claim (e.g. the eps tested within it);
  2. the rule, the same for every claim (:func:`decide`): adjusted p < 0.05 with the effect in the paper's
     direction -> ``supported``; adjusted p < 0.05 against it -> ``contradicted``; otherwise ``not established``,
     stored with the smallest effect this n could detect (two-sided alpha 0.05, 80% power).

Estimators (each returns an :class:`Estimate`):

* :func:`mcnemar_estimate` -- two classifiers, or two attacks, on the same images: paired exact McNemar on the
  per-example flags; effect = difference of accuracies, interval = the exact (Clopper-Pearson) interval of the
  discordant split, conditional on the number of discordant pairs (it excludes 0 exactly when the exact test is
  significant); detectable effect from Connor's (1987) power formula at the observed discordance rate.
* :func:`auroc_difference`, :func:`accuracy_difference` -- several training seeds: a hierarchical bootstrap
  (resample the seeds, then the images within each drawn seed), >= 1,000 replicates, percentile interval,
  bootstrap p; detectable effect (z_0.975 + z_0.8) x the replicates' SD.
* :func:`fid_difference` -- FID(a) - FID(b) against one reference, paired resamples of a and b; each replicate's
  trace term tr sqrt(S_ref S_b) is the sum of square roots of the eigenvalues of an n x n (or D x D) symmetric
  matrix built from precomputed Gram matrices, so 1,000 replicates cost 1,000 small eigenproblems.

:func:`require_same_attacks` refuses, with one line, any comparison of numbers measured under different attack sets.
Everything here is pure (numpy/scipy, explicit seeds); nothing reads or writes files.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import beta, norm

from ..core import paper
from ..core.metrics import mcnemar_p

ALPHA = 0.05  # two-sided
POWER = 0.80
LEVEL = 0.95
MIN_BOOT = 1000  # fewest bootstrap replicates behind a stated 95% interval
DECISIONS = ("supported", "contradicted", "not established")
Z_ALPHA = float(norm.ppf(1 - ALPHA / 2))  # 1.960
Z_POWER = float(norm.ppf(POWER))  # 0.842


class ClaimError(ValueError):
    """A claim that cannot be judged as asked (one line saying why)."""


# ---------------------------------------------------------------------------------------------------------------
# Records
@dataclass(frozen=True)
class Estimate:
    """One tested effect before the rule: ``effect`` = first - second (``comparison`` says which), its 95% ``ci``,
    two-sided ``p``, ``detectable`` (smallest |effect| this evidence detects at alpha 0.05 with 80% power), and the
    evidence: ``runs`` (run keys or classifier names), ``attacks`` (the attack set), ``n`` (images), ``seeds``
    (training seeds), ``eps`` (test eps, None where there is none) and ``n_boot`` (None for exact tests)."""
    test: str
    comparison: str
    effect: float
    ci: tuple[float, float]
    p: float
    detectable: float
    runs: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    n: int = 0
    seeds: tuple[int, ...] = ()
    eps: float | None = None
    n_boot: int | None = None


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict as data: the claim id (paper.CLAIMS), the paper's direction (+1 / -1) of the effect, the
    estimate's fields, ``p_holm`` (Holm-adjusted over the claim's estimates; equal to p for a single one) and the
    ``decision``; ``detectable`` is kept for ``not established`` only (None otherwise)."""
    claim: str
    direction: int
    test: str
    comparison: str
    effect: float
    ci: tuple[float, float]
    p: float
    p_holm: float
    decision: str
    detectable: float | None
    runs: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    n: int = 0
    seeds: tuple[int, ...] = ()
    eps: float | None = None
    n_boot: int | None = None

    def __post_init__(self):
        if self.claim not in paper.CLAIMS:
            raise ClaimError(f"Verdict: unknown claim id {self.claim!r} (known: {', '.join(paper.CLAIMS)})")
        if self.decision not in DECISIONS:
            raise ClaimError(f"Verdict: unknown decision {self.decision!r} (allowed: {', '.join(DECISIONS)})")
        if self.direction not in (1, -1):
            raise ClaimError(f"Verdict: direction must be +1 or -1, got {self.direction!r}")
        if (self.decision == "not established") != (self.detectable is not None):
            raise ClaimError("Verdict: detectable is stored for 'not established' and only there, "
                             f"got decision {self.decision!r} with detectable {self.detectable!r}")

    def to_dict(self) -> dict:
        """JSON-ready: tuples as lists."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        """The inverse of :meth:`to_dict`; an unknown or missing field, or an unknown decision, is refused with one
        line naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ClaimError(f"Verdict.from_dict: unknown field {unknown[0]!r} (known: {', '.join(names)})")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ClaimError(f"Verdict.from_dict: missing field {missing[0]!r}")
        if d["decision"] not in DECISIONS:
            raise ClaimError(f"Verdict.from_dict: unknown decision {d['decision']!r} (allowed: {', '.join(DECISIONS)})")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    def render(self) -> str:
        """One line of text from the stored fields only."""
        where = f" at eps {self.eps:g}" if self.eps is not None else ""
        seeds = f", {len(self.seeds)} seed(s)" if self.seeds else ""
        boot = f", {self.n_boot:,} bootstrap replicates" if self.n_boot else ""
        holm = f", Holm {self.p_holm:.3g}" if self.p_holm != self.p else ""
        attacks = f" under {'+'.join(self.attacks)}" if self.attacks else ""
        tail = (f" (detectable at this n: |effect| >= {self.detectable:.3g})" if self.detectable is not None else "")
        return (f"{self.claim}{where}: {self.comparison}{attacks} = {self.effect:+.4g} "
                f"[95% {self.ci[0]:+.4g}, {self.ci[1]:+.4g}] ({self.test}, n = {self.n:,}{seeds}{boot}; "
                f"p = {self.p:.3g}{holm}) -> {self.decision.upper()}{tail}")


# ---------------------------------------------------------------------------------------------------------------
# The rule
def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as ``p``): sorted ascending, p_(i) x (m - i), running max,
    capped at 1."""
    p = [float(x) for x in p]
    m = len(p)
    order = sorted(range(m), key=p.__getitem__)
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def decide(effect: float, p_adjusted: float, direction: int, alpha: float = ALPHA) -> str:
    """THE rule, for every claim: significant (adjusted p < alpha) in the paper's direction -> supported;
    significant against it -> contradicted; otherwise not established."""
    if direction not in (1, -1):
        raise ClaimError(f"decide: direction must be +1 or -1, got {direction!r}")
    if not p_adjusted < alpha or effect == 0 or not math.isfinite(effect):
        return "not established"
    return "supported" if (effect > 0) == (direction > 0) else "contradicted"


def judge(claim: str, estimates: Sequence[Estimate]) -> list[Verdict]:
    """The verdicts of one claim: Holm over its estimates, then :func:`decide` on each (direction from
    paper.CLAIMS)."""
    if claim not in paper.CLAIMS:
        raise ClaimError(f"judge: unknown claim id {claim!r} (known: {', '.join(paper.CLAIMS)})")
    direction = paper.CLAIMS[claim][2]
    adjusted = holm([e.p for e in estimates])
    out = []
    for e, p_adj in zip(estimates, adjusted):
        decision = decide(e.effect, p_adj, direction)
        fields = dataclasses.asdict(e)
        fields["ci"], fields["runs"], fields["attacks"], fields["seeds"] = e.ci, e.runs, e.attacks, e.seeds
        fields["detectable"] = e.detectable if decision == "not established" else None
        out.append(Verdict(claim=claim, direction=direction, p_holm=p_adj, decision=decision, **fields))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Guards
def require_same_attacks(first: Sequence[str], second: Sequence[str], what: str = "the two numbers") -> tuple[str, ...]:
    """The common attack set of two measurements, or ClaimError (one line) when they differ: a number measured under
    one attack set is not comparable with one measured under another (e.g. a worst case over six attacks at eps 0.5
    and the paper's attack alone at eps 2)."""
    a, b = tuple(sorted(set(first))), tuple(sorted(set(second)))
    if a != b:
        raise ClaimError(f"refused: {what} were measured under different attack sets ({'+'.join(a) or 'none'} vs "
                         f"{'+'.join(b) or 'none'}); compare only numbers measured under the same attacks")
    return a


def effect_change(first: Estimate, second: Estimate) -> float:
    """second.effect - first.effect (e.g. how a gap moves from one eps to the next), only between estimates measured
    under the same attack set (else ClaimError). Descriptive: no test is made of the change."""
    require_same_attacks(first.attacks, second.attacks,
                         what=f"{first.comparison} (eps {first.eps}) and {second.comparison} (eps {second.eps})")
    return second.effect - first.effect


def _check_boot(n_boot: int) -> None:
    if n_boot < MIN_BOOT:
        raise ClaimError(f"a stated 95% interval needs >= {MIN_BOOT:,} bootstrap replicates, got {n_boot:,}")


# ---------------------------------------------------------------------------------------------------------------
# Detectable effects
def detectable_mcnemar(n: int, discordance: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |difference of accuracies| a two-sided paired McNemar test on n images detects with ``power``, at
    discordance rate ``discordance`` (share of images on which the two flags differ; floored at 1/n): the delta
    solving Connor's (1987) n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2."""
    if n < 1:
        raise ClaimError(f"detectable_mcnemar: n must be >= 1, got {n}")
    psi = min(1.0, max(float(discordance), 1.0 / n))
    za, zb = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))

    def gap(d):  # increasing in d; < 0 below the detectable effect
        return n * d * d - (za * math.sqrt(psi) + zb * math.sqrt(max(psi - d * d, 0.0))) ** 2

    if gap(1.0) <= 0:
        return 1.0
    return float(brentq(gap, 1e-12, 1.0, xtol=1e-12))


def detectable_bootstrap(sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |effect| a two-sided test at ``alpha`` detects with ``power`` when the estimate's standard error is
    ``sd`` (the bootstrap replicates' SD): (z_(1 - alpha/2) + z_power) x sd."""
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd)


# ---------------------------------------------------------------------------------------------------------------
# Paired exact McNemar
def mcnemar_estimate(first, second, *, comparison: str, attacks_first: Sequence[str],
                     attacks_second: Sequence[str], pairing: str = "classifiers", runs: Sequence[str] = (),
                     eps: float | None = None, seeds: Sequence[int] = ()) -> Estimate:
    """Paired exact McNemar on per-example flags (bool (n,), True = right / robust) of the same n images.
    ``pairing``: "classifiers" (two classifiers; their attack sets must be the same, else ClaimError) or "attacks"
    (two attacks on one classifier; the sets differ by design and both are recorded).
    effect = acc(first) - acc(second) = (b - c) / n with b = right under first only, c = the converse; interval:
    Clopper-Pearson for b / (b + c), mapped to (b + c) / n x (2 pi - 1); detectable: :func:`detectable_mcnemar` at
    the observed discordance (b + c) / n."""
    f, s = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if f.shape != s.shape or f.ndim != 1 or len(f) == 0:
        raise ClaimError(f"mcnemar_estimate: paired flags must cover the same images, got shapes {f.shape} and {s.shape}")
    if pairing == "classifiers":
        attacks = require_same_attacks(attacks_first, attacks_second, what=comparison)
    elif pairing == "attacks":
        attacks = tuple(dict.fromkeys([*attacks_first, "vs", *attacks_second]))
    else:
        raise ClaimError(f"mcnemar_estimate: pairing must be 'classifiers' or 'attacks', got {pairing!r}")
    n = len(f)
    b, c = int((f & ~s).sum()), int((s & ~f).sum())
    return mcnemar_from_counts(b, c, n, comparison=comparison, attacks=attacks, runs=runs, eps=eps, seeds=seeds)


def mcnemar_from_counts(b: int, c: int, n: int, *, comparison: str, attacks: Sequence[str] = (),
                        runs: Sequence[str] = (), eps: float | None = None, seeds: Sequence[int] = ()) -> Estimate:
    """:func:`mcnemar_estimate` from the discordant counts (b: right under first only, c: the converse) of n images
    (for records that kept the counts, not the flags)."""
    if min(b, c) < 0 or b + c > n:
        raise ClaimError(f"mcnemar: need 0 <= b, c and b + c <= n, got b = {b}, c = {c}, n = {n}")
    m = b + c
    if m == 0:
        ci = (0.0, 0.0)
    else:
        lo = 0.0 if b == 0 else float(beta.ppf(ALPHA / 2, b, c + 1))
        hi = 1.0 if c == 0 else float(beta.ppf(1 - ALPHA / 2, b + 1, c))
        ci = (m / n * (2 * lo - 1), m / n * (2 * hi - 1))
    return Estimate(test="paired exact McNemar", comparison=comparison, effect=(b - c) / n, ci=ci,
                    p=mcnemar_p(b, c), detectable=detectable_mcnemar(n, m / n), runs=tuple(runs),
                    attacks=tuple(attacks), n=n, seeds=tuple(seeds), eps=eps)


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap estimates
def _from_replicates(point: float, reps: np.ndarray, n_boot: int, **evidence) -> Estimate:
    """Percentile 95% interval, two-sided bootstrap p (share of replicates on the far side of 0, doubled, with the
    +1 correction) and the detectable effect from the replicates' SD."""
    lo, hi = np.percentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    tail = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (n_boot + 1))
    return Estimate(effect=float(point), ci=(float(lo), float(hi)), p=p,
                    detectable=detectable_bootstrap(float(reps.std(ddof=1))), n_boot=n_boot, **evidence)


# One seed's contribution: (sizes of the axes resampled within the seed, statistic of the weights). The statistic
# takes one (R, size) array of draw counts per axis and returns (R,) values; all-ones weights give the full data.
Unit = tuple[tuple[int, ...], Callable[[list[np.ndarray]], np.ndarray]]


def hierarchical_bootstrap(units: Sequence[Unit], *, n_boot: int = MIN_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot,) replicates of the mean over seeds of a per-seed statistic: each replicate draws len(units) seeds
    with replacement, then, for each drawn seed, the images of each of its axes with replacement (multinomial
    counts). With one seed it is the ordinary (paired) image bootstrap."""
    _check_boot(n_boot)
    if not units:
        raise ClaimError("hierarchical_bootstrap: no seeds")
    rng = np.random.default_rng(seed)
    s = len(units)
    pick = rng.integers(0, s, size=(n_boot, s))  # (B, S): the seeds of each replicate
    out = np.zeros(n_boot)
    for k, (sizes, stat) in enumerate(units):
        rows = np.nonzero(pick == k)[0]  # replicate index of every draw of seed k
        if len(rows) == 0:
            continue
        weights = [rng.multinomial(n, np.full(n, 1.0 / n), size=len(rows)).astype(np.float64) for n in sizes]
        np.add.at(out, rows, stat(weights))
    return out / s


def _auroc_unit(higher: Sequence, lower: Sequence) -> Unit:
    """One seed: mean AUROC over ``higher``'s (pos, neg) score pairs minus the mean over ``lower``'s; every pair
    scores the same positives and negatives (paired). AUROC_w = w_pos^T C w_neg / (n m), as in
    core.metrics.bootstrap_auroc."""
    pairs = [(np.asarray(p, np.float64), np.asarray(q, np.float64)) for p, q in (*higher, *lower)]
    n, m = len(pairs[0][0]), len(pairs[0][1])
    if any(len(p) != n or len(q) != m for p, q in pairs):
        raise ClaimError("auroc_difference: every pair of a seed must score the same positives and negatives")
    sign = np.array([1.0 / len(higher)] * len(higher) + [-1.0 / len(lower)] * len(lower))
    # the difference is linear in the C matrices: one combined (n, m) matrix per seed
    c = sum(w * ((p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :])) for w, (p, q) in zip(sign, pairs))

    def stat(ws):
        w_pos, w_neg = ws
        return ((w_pos @ c) * w_neg).sum(1) / (n * m)
    return (n, m), stat


def auroc_difference(higher: Sequence[Sequence], lower: Sequence[Sequence], *, comparison: str,
                     seeds: Sequence[int] = (), runs: Sequence[str] = (), attacks: Sequence[str] = (),
                     eps: float | None = None, n_boot: int = MIN_BOOT, seed: int = 0) -> Estimate:
    """AUROC(higher) - AUROC(lower) over training seeds: ``higher[s]`` and ``lower[s]`` are lists of (scores_pos,
    scores_neg) pairs of seed s (one per test eps, averaged), all on the same test images. Effect: the mean over
    seeds; interval and p: :func:`hierarchical_bootstrap`."""
    if len(higher) != len(lower) or not higher:
        raise ClaimError(f"auroc_difference: need the same number (>= 1) of seeds per side, got {len(higher)} and {len(lower)}")
    units = [_auroc_unit(h, l) for h, l in zip(higher, lower)]
    point = float(np.mean([stat([np.ones((1, n)) for n in sizes])[0] for sizes, stat in units]))
    reps = hierarchical_bootstrap(units, n_boot=n_boot, seed=seed)
    return _from_replicates(point, reps, n_boot, test="hierarchical bootstrap (seeds, then images)",
                            comparison=comparison, runs=tuple(runs), attacks=tuple(attacks),
                            n=units[0][0][0] + units[0][0][1], seeds=tuple(seeds) or tuple(range(len(units))), eps=eps)


def accuracy_difference(first: Sequence, second: Sequence, *, comparison: str, attacks_first: Sequence[str],
                        attacks_second: Sequence[str], seeds: Sequence[int] = (), runs: Sequence[str] = (),
                        eps: float | None = None, n_boot: int = MIN_BOOT, seed: int = 0) -> Estimate:
    """acc(first) - acc(second) over training seeds: ``first[s]``, ``second[s]`` per-example flags (n,) of seed s
    on the same images, measured under the same attack set (else ClaimError). Effect: the mean over seeds;
    interval and p: :func:`hierarchical_bootstrap`."""
    attacks = require_same_attacks(attacks_first, attacks_second, what=comparison)
    if len(first) != len(second) or not first:
        raise ClaimError(f"accuracy_difference: need the same number (>= 1) of seeds per side, got {len(first)} and {len(second)}")
    units = []
    for a, b in zip(first, second):
        d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        units.append(((len(d),), lambda ws, d=d: ws[0] @ d / len(d)))
    point = float(np.mean([np.mean(np.asarray(a, np.float64) - np.asarray(b, np.float64)) for a, b in zip(first, second)]))
    reps = hierarchical_bootstrap(units, n_boot=n_boot, seed=seed)
    return _from_replicates(point, reps, n_boot, test="hierarchical bootstrap (seeds, then images)",
                            comparison=comparison, runs=tuple(runs), attacks=attacks, n=units[0][0][0],
                            seeds=tuple(seeds) or tuple(range(len(units))), eps=eps)


# ---------------------------------------------------------------------------------------------------------------
# FID: the eigenvalue form of the trace term, and a cheap paired bootstrap
def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2: sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1))) (a symmetric PSD matrix
    similar to S1 S2), eigenvalues clipped at 0 against rounding."""
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = r @ s2 @ r
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())


def frechet(mu1, s1, mu2, s2) -> float:
    """|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), the trace term by :func:`trace_sqrt_product`."""
    d = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s2, s1))


class _FIDSet:
    """FID of weighted resamples of one feature set X (n, D) against a fixed reference (mu_r, S_r). With X0 = X -
    mean(X), c = mean(X) - mu_r and counts w (sum n): mu_w = mean + X0^T w / n, S_w = X0^T W X0 / (n - 1) - n/(n-1)
    m m^T with m = X0^T w / n. The nonzero eigenvalues of sqrt(S_r) S_w sqrt(S_r) are those of the n x n matrix
    W^1/2 P K P^T W^1/2 / (n - 1), K = X0 S_r X0^T and P = I - 1 w^T / n (eig(AB) = eig(BA)); for n > D the D x D
    form Z^T W Z with Z = X0 sqrt(S_r) is smaller. K, X0 X0^T, Z are computed once; a replicate is one eigenproblem."""

    def __init__(self, x: np.ndarray, mu_r: np.ndarray, s_r: np.ndarray):
        x = np.asarray(x, np.float64)
        self.n, d = x.shape
        mean = x.mean(0)
        x0 = x - mean
        self.c = mean - mu_r
        self.cc = float(self.c @ self.c)
        self.x0c = x0 @ self.c  # (n,)
        self.sq = np.einsum("ij,ij->i", x0, x0)  # (n,) |x0_j|^2
        self.tr_r = float(np.trace(s_r))
        self.gram_route = self.n <= d
        if self.gram_route:
            self.k = x0 @ s_r @ x0.T  # (n, n)
            self.l = x0 @ x0.T  # (n, n)
        else:
            w, v = np.linalg.eigh((s_r + s_r.T) / 2)
            self.z = x0 @ ((v * np.sqrt(np.clip(w, 0.0, None))) @ v.T)  # (n, D)
            self.x0 = x0

    def fid(self, w: np.ndarray) -> float:
        n = self.n
        if self.gram_route:
            lw = self.l @ w
            m_sq = float(w @ lw) / n ** 2  # |m|^2
            keep = w > 0
            kw = self.k @ w
            # P K P^T restricted to drawn rows: K - (K w) 1^T / n - 1 (K w)^T / n + (w^T K w) / n^2
            g = (self.k - kw[:, None] / n - kw[None, :] / n + float(w @ kw) / n ** 2)[np.ix_(keep, keep)]
            sw = np.sqrt(w[keep])
            mat = sw[:, None] * g * sw[None, :] / (n - 1)
        else:
            mvec = self.x0.T @ w / n
            m_sq = float(mvec @ mvec)
            zm = self.z.T @ w / n
            mat = (self.z.T * w) @ self.z / (n - 1) - n / (n - 1) * np.outer(zm, zm)
        tr_cov = (float(w @ self.sq) - n * m_sq) / (n - 1)
        mean_sq = self.cc + 2 * float(w @ self.x0c) / n + m_sq
        tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((mat + mat.T) / 2), 0.0, None)).sum())
        return mean_sq + self.tr_r + tr_cov - 2 * tr_sqrt


def fid_difference(mu_ref, sigma_ref, feats_a, feats_b, *, comparison: str, runs: Sequence[str] = (),
                   attacks: Sequence[str] = (), n_boot: int = MIN_BOOT, seed: int = 0) -> Estimate:
    """FID(a) - FID(b) against one reference (mean (D,), covariance (D, D)); a and b are paired (row i of both
    from the same seed or test image), so every replicate resamples the same rows of both; the reference is
    fixed. Effect: on the full sets; interval and p: percentile bootstrap with >= 1,000 replicates."""
    _check_boot(n_boot)
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ClaimError(f"fid_difference: feature sets must be paired (same shape, n >= 2), got {a.shape} and {b.shape}")
    mu_r, s_r = np.asarray(mu_ref, np.float64), np.asarray(sigma_ref, np.float64)
    fa, fb = _FIDSet(a, mu_r, s_r), _FIDSet(b, mu_r, s_r)
    n = len(a)
    ones = np.ones(n)
    point = fa.fid(ones) - fb.fid(ones)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, n)
    reps = np.array([fa.fid(w) - fb.fid(w) for w in counts])
    return _from_replicates(point, reps, n_boot, test="paired bootstrap of FID (eigenvalue trace term)",
                            comparison=comparison, runs=tuple(runs), attacks=tuple(attacks), n=n)
