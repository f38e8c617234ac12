"""Claims as data: one verdict engine under one statistical rule.

Every claim of the paper that a notebook tests (ids in :data:`genrobust.core.paper.CLAIMS`) is judged here and
stored as :class:`Verdict` records in the notebook's metrics file; notebooks and REPORT.md only render them.

**The rule** (:func:`decide`), for every claim alike. Each claim is tested on one or more *subjects* (the eps of
Tab. 1, the cells of Tab. 2, the comparisons of Figs. 5-8), each with a two-sided test at alpha = 0.05; the p values
of one claim's subjects are Holm-adjusted together. A subject is

- ``supported`` when its adjusted p < alpha and the effect has the sign the paper implies,
- ``contradicted`` when its adjusted p < alpha and the effect has the other sign (or, for a claim of no
  difference, any sign),
- ``not established`` otherwise, with the smallest effect this n could have detected (two-sided alpha 0.05,
  80% power).

The claim's own decision: supported (contradicted) when every subject is; not established when none is decided;
else ``mixed`` with the counts.

**The tests.** Two classifiers or two attacks on the same images: exact McNemar on per-example flags, effect =
difference of accuracies, the exact interval of the paired difference (:func:`mcnemar_interval`). Several training seeds: a hierarchical bootstrap
(seeds resampled, then test images, :func:`hierarchical_auroc_bootstrap`). FID: the paired bootstrap of
:func:`genrobust.measure.fid.paired_bootstrap`. A stated 95% interval needs at least
:data:`genrobust.core.metrics.MIN_BOOTSTRAP_FOR_CI` replicates. Two numbers measured under different attack sets
are never compared (:func:`same_attacks`).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from scipy.stats import beta, norm

from ..core import paper
from ..core.metrics import MIN_BOOTSTRAP_FOR_CI, bootstrap_p, mcnemar
from ..core.registry import PAPER_ATTACK
from .record import EvalRecord

ALPHA = 0.05
POWER = 0.8
DECISIONS = ("supported", "contradicted", "not established")
CLAIM_DECISIONS = DECISIONS + ("mixed", "not tested")
Z_DETECT = float(norm.ppf(1 - ALPHA / 2) + norm.ppf(POWER))  # 2.80: two-sided alpha 0.05, 80% power


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
    unit: str = "accuracy"                  # accuracy (fractions), FID, AUROC
    note: str = ""

    def __post_init__(self):
        if self.claim not in paper.CLAIMS:
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
        """An effect (or bound) of this verdict in its unit, signed: points, AUROC or FID."""
        return f"{100 * v:+.1f} points" if self.unit == "accuracy" else f"{v:+.3f}" if self.unit == "AUROC" \
            else f"{v:+.1f}"

    def render(self) -> str:
        """One line from the stored fields only."""
        ci = "" if self.ci95 is None else f", 95% CI [{self.fmt(self.ci95[0])}, {self.fmt(self.ci95[1])}]"
        p = "" if self.p is None else f", p = {self.p:.2g}" + (
            "" if self.p_adjusted is None or self.p_adjusted == self.p else f" (Holm {self.p_adjusted:.2g})")
        n = self.evidence.get("n")
        tail = ""
        if self.decision == "not established" and self.detectable is not None:
            tail = f"; at this n only an effect of about {self.fmt(self.detectable).lstrip('+')} or more could be detected"
        return (f"{self.subject}: **{self.decision}** ({self.unit} {self.fmt(self.effect)}{ci}{p}; "
                f"{self.test}{'' if n is None else f', n = {n:,}'}{tail})" + (f". {self.note}" if self.note else ""))


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


def decide(effect: float, p_adjusted: Optional[float], direction: int) -> str:
    """The one rule: see the module docstring."""
    if p_adjusted is None or not p_adjusted < ALPHA:
        return "not established"
    if direction == 0:
        return "contradicted"
    return "supported" if math.copysign(1, effect) == direction and effect != 0 else "contradicted"


def judge(claim: str, subjects: list[dict]) -> list[Verdict]:
    """Holm over the claim's subjects, then :func:`decide` for each. ``subjects``: dicts of Verdict's fields
    without claim, p_adjusted and decision."""
    direction = paper.CLAIMS[claim][2]
    adjusted = holm([s["p"] for s in subjects])
    out = []
    for s, p_adj in zip(subjects, adjusted):
        decision = decide(s["effect"], p_adj, direction)
        out.append(Verdict(claim=claim, p_adjusted=p_adj, decision=decision,
                           **{**s, "detectable": s.get("detectable") if decision == "not established" else None}))
    return out


def claim_decision(verdicts: Iterable[Verdict]) -> tuple[str, str]:
    """(decision, why) of a claim from its subjects' verdicts."""
    v = list(verdicts)
    if not v:
        return "not tested", "no subject of this claim was measured"
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
    # the smallest paired difference detectable at this n, for the observed discordance (at least 1 pair in n)
    disc = max(b + c, 1) / n if n else float("nan")
    return {"subject": subject, "evidence": {**evidence, "n": n, "right_first_only": b, "right_second_only": c},
            "test": "exact McNemar (paired, two-sided)", "effect": d, "ci95": mcnemar_interval(b, c, n), "p": t["p"],
            "detectable": Z_DETECT * math.sqrt(disc / n) if n else None, "unit": "accuracy"}


def bootstrap_subject(replicates: np.ndarray, effect: float, subject: str, evidence: dict, test: str,
                      unit: str) -> dict:
    """A subject from bootstrap replicates of an effect: percentile 95% interval (from MIN_BOOTSTRAP_FOR_CI
    replicates on; fewer: ClaimError), two-sided p = 2 min(P(rep <= 0), P(rep >= 0)), detectable = 2.8 SE."""
    reps = np.asarray(replicates, dtype=np.float64)
    if len(reps) < MIN_BOOTSTRAP_FOR_CI:
        raise ClaimError(f"{subject}: {len(reps)} bootstrap replicates; a stated 95% interval needs at least "
                         f"{MIN_BOOTSTRAP_FOR_CI} (raise n_boot)")
    lo, hi = np.percentile(reps, [2.5, 97.5])
    p = bootstrap_p(reps)
    return {"subject": subject, "evidence": {**evidence, "n_boot": len(reps)}, "test": test, "effect": float(effect),
            "ci95": (float(lo), float(hi)), "p": p, "detectable": Z_DETECT * float(reps.std(ddof=1)), "unit": unit}


def hierarchical_auroc_bootstrap(higher: list[np.ndarray], lower: list[np.ndarray], *, n_boot: int,
                                 seed: int = 0) -> np.ndarray:
    """Replicates of mean(AUROC higher) - mean(AUROC lower) over training seeds, resampling seeds (paired by seed)
    and then test images. ``higher``/``lower``: per seed, (n_boot, k) image-bootstrap AUROCs (one column per test
    eps of the metric) from :func:`genrobust.core.metrics.bootstrap_auroc` with the same image resamples."""
    hi, lo = np.stack([h.mean(1) for h in higher]), np.stack([l.mean(1) for l in lower])  # (S, B)
    s, b = hi.shape
    if lo.shape != hi.shape:
        raise ClaimError(f"seeds differ between the two settings ({len(higher)} vs {len(lower)}); pair them by seed")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, s, size=(n_boot, s))                # seeds drawn per replicate
    col = rng.integers(0, b, size=n_boot)                      # one image resample per replicate
    return (hi[pick, col[:, None]] - lo[pick, col[:, None]]).mean(1)


# ---------------------------------------------------------------------------------------------------------------
# Notebook 03: Tab. 1, Fig. 1 and the protocol gap, from the evaluation records
def accuracy_verdicts(records: dict[str, EvalRecord]) -> list[Verdict]:
    """Verdicts of tab1_robust (worst case per strong eps), fig1_robust (the paper's attacks per grid eps),
    tab1_clean and protocol_<kind> (the paper's attack vs the worst case per strong eps) from {kind: EvalRecord}."""
    out: list[Verdict] = []
    g, s = records.get("generative"), records.get("softmax")
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
                                            {"first": "generative", "second": "softmax", "eps": e,
                                             "attacks": attacks}))
        out += judge("tab1_robust", subjects)
        grid = sorted(set(g.eps_values(("paper",))) & set(s.eps_values(("paper",))) - {0.0})
        out += judge("fig1_robust", [mcnemar_subject(g.paper_flags(e), s.paper_flags(e), f"eps {e:g}, paper's attacks",
                                                     {"first": "generative", "second": "softmax", "eps": e,
                                                      "attacks": ["paper"]}) for e in grid])
        out += judge("tab1_clean", [mcnemar_subject(g.clean_flags, s.clean_flags, "clean",
                                                    {"first": "generative", "second": "softmax", "eps": 0.0,
                                                     "attacks": []})])
    for kind, rec in records.items():
        claim = f"protocol_{kind}"
        if claim not in paper.CLAIMS:
            continue
        subjects = []
        for e in sorted(set(rec.eps_values(("strong",))) - {0.0}):
            run, worst = rec.paper_run(e), rec.worst(e)
            if run is None or len(worst.attacks) < 2:
                continue
            subjects.append(mcnemar_subject(run.flags, worst.flags, f"eps {e:g}",
                                            {"first": f"{kind}, paper's attack", "second": f"{kind}, worst case",
                                             "eps": e, "attacks": list(worst.attacks)}))
        out += judge(claim, subjects)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Notebook 04: Tab. 2 from the paired FID bootstraps
def generation_verdicts(paired: list[dict]) -> list[Verdict]:
    """tab2_fid per cell from 04's paired bootstraps (each: kind, steps, step_size, diff = FID generative -
    softmax, ci95, p, sd, n_boot). A bootstrap of fewer than MIN_BOOTSTRAP_FOR_CI replicates gives no interval
    and no p: that cell is not established."""
    subjects = []
    for b in paired:
        enough = b.get("n_boot", 0) >= MIN_BOOTSTRAP_FOR_CI and b.get("ci95") is not None and b.get("p") is not None
        subjects.append({
            "subject": f"{b['kind']}, {b['steps']} x {b['step_size']:g}", "unit": "FID",
            "evidence": {"first": "generative", "second": "softmax", "n": b.get("n"), "n_boot": b.get("n_boot")},
            "test": "paired bootstrap over images (same resampled seeds for both)", "effect": b["diff"],
            "ci95": tuple(b["ci95"]) if enough else None, "p": b["p"] if enough else None,
            "detectable": Z_DETECT * b["sd"] if b.get("sd") is not None else None,
            "note": "" if enough else (f"only {b.get('n_boot', 0)} bootstrap replicates stored; a 95% interval and a "
                                       f"test need {MIN_BOOTSTRAP_FOR_CI}")})
    return judge("tab2_fid", subjects)
