"""The verdict engine's record and its one rule: a :class:`Verdict` per subject of a claim, Holm over a claim's
subjects, supported / contradicted / not established with the detectable effect, the claim's own decision, the scale.

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

The subjects the rule judges come from :mod:`genrobust.measure.claims_subjects` (one statistical test each).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Iterable, Optional, Sequence

from scipy.stats import norm
from scipy.stats import t as student_t

from ..core import paper
from ..core.upgrade import RETIRED_CLAIMS

__all__ = ["ALPHA", "POWER", "DECISIONS", "CLAIM_DECISIONS", "claim_info", "ClaimError", "Verdict", "holm", "decide",
           "holm_alphas", "detectable_effect", "judge", "claim_decision", "ONE_RUN", "scale_label"]

ALPHA = 0.05
POWER = 0.8
P_FLOOR = 1e-12  # p values below this print as "< 1e-12" (Verdict.p_text)
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
        2 / (B + 1), so a p at the floor says only that it is below it; 'p < 1e-12' below P_FLOOR, where a normal or
        t tail's digits say more about the approximation than about the data."""
        p = self.p if p is None else p
        b = self.evidence.get("n_boot")
        if "bootstrap" in self.test and b and p <= max(2 / (b + 1), 1 / b) + 1e-12:
            return f"< {2 / (b + 1):.2g}"
        if p < P_FLOOR:
            return f"< {P_FLOOR:.0e}"
        return f"= {p:.2g}"

    def decision_text(self) -> str:
        """'**contradicted** at this scale (cpu profile, one training run per arm)'."""
        return f"**{self.decision}**" + (f" at this scale ({self.scale})" if self.scale else "")

    def render(self) -> str:
        """One line from the stored fields only."""
        ci = "" if self.ci95 is None else f", 95% CI [{self.fmt(self.ci95[0])}, {self.fmt(self.ci95[1])}]"
        # Holm's p through the same floors as the raw p: below 1e-12 neither prints digits (an adjusted p printed
        # as 3e-198 beside a raw 'p < 1e-12' read as smaller than the p it adjusts); shown where it reads otherwise.
        adjusted = None if self.p_adjusted is None else self.p_text(self.p_adjusted)
        p = "" if self.p is None else f", p {self.p_text()}" + (
            "" if adjusted is None or adjusted == self.p_text() else f" (Holm {adjusted.removeprefix('= ')})")
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


ONE_RUN = "one training run per arm"  # 03 and 04: one trained generative classifier and one softmax baseline


def scale_label(profile: str, runs: str) -> str:
    """What a verdict holds at: the profile and how many training runs stand behind each arm. The p values
    condition on these runs: they measure test-image sampling (03, 04), or training seeds (05), not the method."""
    return f"{profile} profile, {runs}"
