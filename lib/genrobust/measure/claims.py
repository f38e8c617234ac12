"""Claims as data: one verdict engine under one statistical rule.

Every claim of the paper that a notebook tests (ids in :data:`genrobust.core.paper.CLAIMS`) is judged here and
stored as :class:`Verdict` records; notebooks, REPORT.md and README only render them.

**The rule** (:func:`decide`), for every claim alike. Each claim is tested on one or more *subjects* (the eps of
Tab. 1, the cells of Tab. 2, the comparisons of Figs. 5-8), each with a two-sided test at alpha = 0.05 of a null
that can hold; the p values of one claim's subjects are Holm-adjusted together. A subject is

- ``supported`` when its adjusted p < alpha and the effect lies on the side of the null the paper implies,
- ``contradicted`` when its adjusted p < alpha and the effect lies on the other side,
- ``not established`` otherwise, with the smallest effect this n could have detected at the level Holm tested
  that subject at (80% power).

The claim's own decision: supported (contradicted) when every subject is; not established when none is decided;
else ``mixed`` with the counts. Every verdict carries the scale it holds at (:func:`scale_label`: the profile and
the training runs per arm): the p values condition on those trained networks.

**The tests.** Two classifiers on the same images: exact McNemar on per-example flags (:func:`mcnemar_subject`).
An attack against the worst case over every attack on one classifier: the worst case is at most each attack, so
the discordance is one-way by construction; the gap b / n gets its exact interval and an exact binomial test
against a stated tolerance (:func:`gap_subject`). Fig. 1's crossover: the slope of the paired gap against eps
(:func:`slope_subject`). Several training seeds: a t test over the seeds (:func:`seed_t_subject`). FID: the
half-subsampling replicates of :func:`genrobust.measure.fid.paired_subsampling` (:func:`subsample_subject`).
Two numbers measured under different attack sets are never compared (:func:`same_attacks`).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from scipy.stats import beta, binom, norm
from scipy.stats import t as student_t

from ..core import paper
from ..core.config import EvalConfig
from ..core.metrics import mcnemar
from ..core.registry import PAPER_ATTACK
from ..core.upgrade import RETIRED_CLAIMS
from .record import EvalRecord

ALPHA = 0.05
POWER = 0.8
DECISIONS = ("supported", "contradicted", "not established")
CLAIM_DECISIONS = DECISIONS + ("mixed", "not tested")


def claim_info(claim: str) -> tuple[str, str]:
    """(source, the claim in words) of a claim id, current (core/paper.CLAIMS) or retired (upgrade.RETIRED_CLAIMS)."""
    return paper.CLAIMS[claim][:2] if claim in paper.CLAIMS else RETIRED_CLAIMS[claim]


class ClaimError(ValueError):
    """A comparison the rule does not allow (different attack sets, too few replicates) or a bad stored verdict."""


@dataclass(frozen=True)
class Verdict:
    """One subject of one claim: the evidence, the test, the effect with its interval, p, and the decision."""
    claim: str                              # id in core/paper.CLAIMS
    subject: str                            # what was tested, e.g. "eps 0.5" or "samples, 7 steps"
    evidence: dict                          # which runs / attack sets / seeds, and n
    test: str                               # e.g. "exact McNemar (paired, two-sided)"
    effect: float                           # the measured effect (definition in core/paper.CLAIMS)
    ci95: Optional[tuple[float, float]]     # its 95% interval (None: the test gives none)
    p: Optional[float]
    p_adjusted: Optional[float]             # Holm over the claim's subjects
    decision: str                           # one of DECISIONS
    detectable: Optional[float] = None      # smallest |effect| this n could detect (when not established)
    unit: str = "accuracy"                  # accuracy (fractions), accuracy/eps (a slope), FID, AUROC
    note: str = ""
    scale: str = ""                         # the scale it holds at, e.g. "cpu profile, one training run per arm"

    def __post_init__(self):
        if self.claim not in paper.CLAIMS and self.claim not in RETIRED_CLAIMS:
            raise ClaimError(f"unknown claim id {self.claim!r}; known: {sorted(paper.CLAIMS)} (genrobust.core.paper)")
        if self.decision not in DECISIONS:
            raise ClaimError(f"unknown decision {self.decision!r} for {self.claim}; one of {DECISIONS}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = None if self.ci95 is None else [float(v) for v in self.ci95]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ClaimError(f"stored verdict has unknown field(s) {unknown}; written by a newer genrobust? update it")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ClaimError(f"stored verdict lacks field(s) {missing}; written by another genrobust? re-run its notebook")
        d = dict(d)
        if d.get("ci95") is not None:
            d["ci95"] = tuple(d["ci95"])
        return cls(**d)

    def fmt(self, v: float) -> str:
        """An effect (or bound) of this verdict in its unit, signed: points, points per unit eps, AUROC or FID."""
        return (f"{100 * v:+.1f} points" if self.unit == "accuracy" else f"{100 * v:+.1f} points per unit eps"
                if self.unit == "accuracy/eps" else f"{v:+.3f}" if self.unit == "AUROC" else f"{v:+.1f}")

    def p_text(self, p: Optional[float] = None) -> str:
        """'p = 0.031', or 'p < 0.002' at a bootstrap p's floor: a two-sided p from B replicates cannot go below
        2 / (B + 1), so a p at the floor says only that it is below it."""
        p = self.p if p is None else p
        b = self.evidence.get("n_boot")
        if "bootstrap" in self.test and b and p <= max(2 / (b + 1), 1 / b) + 1e-12:
            return f"< {2 / (b + 1):.2g}"
        return f"= {p:.2g}"

    def decision_text(self) -> str:
        """'**contradicted** at this scale (cpu profile, one training run per arm)'."""
        return f"**{self.decision}**" + (f" at this scale ({self.scale})" if self.scale else "")

    def render(self) -> str:
        """One line from the stored fields only."""
        ci = "" if self.ci95 is None else f", 95% CI [{self.fmt(self.ci95[0])}, {self.fmt(self.ci95[1])}]"
        p = "" if self.p is None else f", p {self.p_text()}" + (
            "" if self.p_adjusted is None or self.p_adjusted == self.p else f" (Holm {self.p_adjusted:.2g})")
        n = self.evidence.get("n")
        tail = ""
        if self.decision == "not established" and self.detectable is not None:
            level = self.evidence.get("alpha")
            at = "" if level is None else f" (two-sided level {level:.3g} as Holm tested it, 80% power)"
            tail = (f"; at this n only an effect of about {self.fmt(self.detectable).lstrip('+')} or more"
                    f"{' from the tolerance' if self.evidence.get('tolerance') is not None else ''} could be "
                    f"detected{at}")
        seeds = self.evidence.get("seeds")
        size = ("" if n is None else f", n = {n:,}") if not seeds else \
            f", {seeds} seeds" + ("" if n is None else f" x {n:,} test images")
        return (f"{self.subject}: {self.decision_text()} ({self.unit} {self.fmt(self.effect)}{ci}{p}; "
                f"{self.test}{size}{tail})" + (f". {self.note}" if self.note else ""))


# ---------------------------------------------------------------------------------------------------------------
# The rule
def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment (None stays None and is not counted)."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    order = sorted(idx, key=lambda i: p_values[i])
    out: list[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        out[i] = running
    return out


def decide(effect: float, p_adjusted: Optional[float], direction: int, null: float = 0.0) -> str:
    """The one rule: see the module docstring. ``null``: the value the test's null hypothesis puts the effect at
    (0, or a stated tolerance: the attack gaps)."""
    if p_adjusted is None or not p_adjusted < ALPHA:
        return "not established"
    if direction == 0:
        return "contradicted"
    return "supported" if math.copysign(1, effect - null) == direction and effect != null else "contradicted"


def holm_alphas(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """The level Holm tests each p at: alpha / (number of tested p values - its rank in ascending order)."""
    idx = sorted((i for i, p in enumerate(p_values) if p is not None), key=lambda i: p_values[i])
    out: list[Optional[float]] = [None] * len(p_values)
    for rank, i in enumerate(idx):
        out[i] = ALPHA / (len(idx) - rank)
    return out


def detectable_effect(se: float, alpha: float, df: Optional[int] = None) -> float:
    """The smallest |effect| a two-sided test at level ``alpha`` detects with 80% power, for an estimate with this
    standard error: (q(1 - alpha / 2) + q(0.8)) x SE, q the normal quantile, or Student's t with ``df``."""
    q = norm.ppf if df is None else (lambda u: student_t.ppf(u, df))
    return float((q(1 - alpha / 2) + q(POWER)) * se)


def judge(claim: str, subjects: list[dict], scale: str = "") -> list[Verdict]:
    """Holm over the claim's subjects, then :func:`decide` for each. ``subjects``: dicts of Verdict's fields
    without claim, p_adjusted and decision, plus ``se`` (the effect's standard error) and optionally ``df`` (a
    t test's degrees of freedom), from which a not-established subject's detectable effect is computed at the level
    Holm actually tested it at (kept in the evidence as ``se``, ``df``, ``alpha``). ``scale``: what the verdict
    holds at (:func:`scale_label`), stored on each verdict and rendered beside its decision."""
    direction = paper.CLAIMS[claim][2]
    ps = [s["p"] for s in subjects]
    adjusted, alphas = holm(ps), holm_alphas(ps)
    out = []
    for s, p_adj, a in zip(subjects, adjusted, alphas):
        s = dict(s)
        se, df = s.pop("se", None), s.pop("df", None)
        decision = decide(s["effect"], p_adj, direction, s.pop("null", 0.0))
        level = ALPHA if a is None else a
        detectable = (detectable_effect(se, level, df) if se is not None and math.isfinite(se)
                      else None) if decision == "not established" else None
        evidence = {**s.pop("evidence"), "se": se, **({} if df is None else {"df": df}), "alpha": level}
        out.append(Verdict(claim=claim, p_adjusted=p_adj, decision=decision, evidence=evidence,
                           **{**s, "detectable": detectable, "scale": scale}))
    return out


def claim_decision(verdicts: Iterable[Verdict], untested: Sequence[str] = (),
                   no_subject: str = "no subject of this claim was measured") -> tuple[str, str]:
    """(decision, why) of a claim from its subjects' verdicts. ``untested``: why each planned subject that could not
    be tested was not (any one makes the claim not tested, for the first reason); ``no_subject``: why a claim
    without any subject was not tested."""
    v = list(verdicts)
    if untested:
        return "not tested", untested[0]
    if not v:
        return "not tested", no_subject
    counts = {d: sum(x.decision == d for x in v) for d in DECISIONS}
    for d in ("supported", "contradicted"):
        if counts[d] == len(v):
            return d, f"all {len(v)} subject(s) {d}"
    if counts["not established"] == len(v):
        return "not established", f"none of {len(v)} subject(s) decided at this n"
    return "mixed", ", ".join(f"{n} {d}" for d, n in counts.items() if n)


# ---------------------------------------------------------------------------------------------------------------
# Tests
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


ONE_RUN = "one training run per arm"  # 03 and 04: one trained generative classifier and one softmax baseline


def scale_label(profile: str, runs: str) -> str:
    """What a verdict holds at: the profile and how many training runs stand behind each arm. The p values
    condition on these runs: they measure test-image sampling (03, 04), or training seeds (05), not the method."""
    return f"{profile} profile, {runs}"


# ---------------------------------------------------------------------------------------------------------------
# Notebook 03: Tab. 1, Fig. 1 and the protocol gap, from the evaluation records
def accuracy_verdicts(records: dict[str, EvalRecord], *, gap_tolerance: float = EvalConfig.aa_gap,
                      scale: str = "") -> list[Verdict]:
    """Verdicts of tab1_robust (worst case per strong eps), tab1_robust_paper (Tab. 1's own quantity: each
    classifier's paper attack at Tab. 1's eps, on every evaluation image), fig1_gap (the slope of the paper-attack
    gap against eps over the grid, eps 0 = clean), tab1_clean and protocol_<kind> (the paper's attack vs the worst
    case per strong eps, against ``gap_tolerance``, e.g. eval.aa_gap) from {kind: EvalRecord}."""
    out: list[Verdict] = []
    g, s = records.get("generative"), records.get("softmax")
    pair = {"first": "generative", "second": "softmax"}
    if g is not None and s is not None:
        strong = sorted(set(g.eps_values(("strong",))) & set(s.eps_values(("strong",))) - {0.0})
        subjects = []
        for e in strong:
            wg, ws = g.worst(e), s.worst(e)
            try:
                attacks = same_attacks(wg.attacks, ws.attacks, ("generative", "softmax"))
            except ClaimError:
                continue  # a classifier missed an attack at this eps: not comparable, so not a subject
            subjects.append(mcnemar_subject(wg.flags, ws.flags, f"eps {e:g}, worst case",
                                            {**pair, "eps": e, "attacks": attacks}))
        out += judge("tab1_robust", subjects, scale)
        grid = sorted(set(g.eps_values(("paper",))) & set(s.eps_values(("paper",))) - {0.0})
        e1 = paper.TAB1["eps"]
        if e1 in grid:
            out += judge("tab1_robust_paper", [mcnemar_subject(
                g.paper_flags(e1), s.paper_flags(e1), f"eps {e1:g}, paper's attacks (like-for-like with Tab. 1)",
                {**pair, "eps": e1, "attacks": ["paper"]})], scale)
        if grid:
            eps = [0.0] + grid
            out += judge("fig1_gap", [slope_subject([g.paper_flags(e) for e in eps], [s.paper_flags(e) for e in eps],
                                                    eps, f"eps {eps[0]:g}-{eps[-1]:g}, paper's attacks",
                                                    {**pair, "attacks": ["paper"]})], scale)
        out += judge("tab1_clean", [mcnemar_subject(g.clean_flags, s.clean_flags, "clean",
                                                    {**pair, "eps": 0.0, "attacks": []})], scale)
    for kind, rec in records.items():
        claim = f"protocol_{kind}"
        if claim not in paper.CLAIMS:
            continue
        subjects = []
        for e in sorted(set(rec.eps_values(("strong",))) - {0.0}):
            run, worst = rec.paper_run(e), rec.worst(e)
            if run is None or len(worst.attacks) < 2:
                continue
            subjects.append(gap_subject(run.flags, worst.flags, f"eps {e:g}",
                                        {"first": f"{kind}, paper's attack", "second": f"{kind}, worst case",
                                         "eps": e, "attacks": list(worst.attacks)}, gap_tolerance))
        out += judge(claim, subjects, scale)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Notebook 04: Tab. 2 from the paired FID half-subsampling replicates
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


def generation_verdicts(paired: list[dict], scale: str = "", chained: bool = False) -> list[Verdict]:
    """tab2_fid per cell from 04's stored subsampling replicates (each: kind, steps, step_size, diff = FID
    generative - softmax on the full sets, n, m, replicates). With ``chained`` (04's record says so) the 10-step
    cells continue the 7-step chains (the same starting images, 3 steps further), so the four cells are two
    independent comparisons, not four; Holm over the four is valid under any dependence (and conservative)."""
    subjects = []
    for b in paired:
        if "replicates" not in b:
            raise ClaimError(f"04's paired record for {b.get('kind')}, {b.get('steps')} steps holds no subsampling "
                             "replicates (written before the subsampling scheme of issue 39); re-run notebook 04 to judge Tab. 2")
        subjects.append(subsample_subject(
            b["replicates"], b["diff"], b["n"], b["m"], f"{b['kind']}, {b['steps']} x {b['step_size']:g}",
            {"first": "generative", "second": "softmax", "steps": b["steps"],
             **({"chained": "the longer runs continue the shorter ones' chains (the same starting images): "
                            "independent comparisons = kinds, not cells"} if chained else {})}, "FID"))
    return judge("tab2_fid", subjects, scale)
