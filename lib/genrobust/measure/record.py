"""One record per evaluation: the typed view every table, check, plot, report and verdict reads.

:func:`genrobust.measure.accuracy.evaluate_classifier` writes a JSON-able dict (stored in 03's metrics file under
``classifiers.<kind>``); :class:`EvalRecord` reads it once and answers the questions the rest of the code asks:
the paper's run at eps (:meth:`EvalRecord.paper_run`), the per-example worst case at eps over all attacks or a
given set (:meth:`EvalRecord.worst`), the runs at eps, and the eps that have runs of some roles. Every "find the
paper's run" and "AND the robust flags over runs" lives here, once.

Flags are (n,) bool tensors over the evaluation order (prefixes: a run on n images covers the first n).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch

from ..core.stats import wilson_interval

EPS_TOL = 1e-12
ROLES_ATTACKED = ("paper", "strong", "more steps", "more restarts")


def flags_to_str(flags: torch.Tensor) -> str:
    """(n,) bool flags as '1'/'0' text, how records store them (compact, diffable JSON)."""
    return "".join("1" if f else "0" for f in flags.tolist())


def str_to_flags(s: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in s], dtype=torch.bool)


@dataclass(frozen=True)
class AttackResult:
    """What one planned attack run (:class:`genrobust.measure.accuracy.AttackRun`) gave, as stored: its settings,
    n and per-example robust flags."""
    attack: str
    eps: float
    n: int
    role: str
    robust: str                       # '1'/'0' per example, in evaluation order
    settings: dict = field(default_factory=dict, compare=False)  # steps, step size, restarts, budgets, time...

    @property
    def flags(self) -> torch.Tensor:
        return str_to_flags(self.robust)

    def prefix(self, n: int) -> torch.Tensor:
        """The flags of the first ``n`` examples (a run on more images covers the first n)."""
        return self.flags[:n]

    @property
    def accuracy(self) -> float:
        return self.robust.count("1") / len(self.robust) if self.robust else float("nan")

    @classmethod
    def from_dict(cls, d: dict) -> "AttackResult":
        return cls(d["attack"], float(d["eps"]), int(d["n"]), d["role"], d["robust"],
                   {k: v for k, v in d.items() if k not in ("attack", "eps", "n", "role", "robust")})

    def to_dict(self) -> dict:
        """The stored form (settings, accuracy, ci95, timings... as the evaluation wrote them)."""
        return {"attack": self.attack, "eps": self.eps, "n": self.n, "role": self.role, **self.settings,
                "robust": self.robust}


@dataclass(frozen=True)
class Worst:
    """The per-example worst case at one eps: robust only if no attack of ``attacks`` broke the example (and it
    was clean-correct), on the common prefix ``n`` of those runs."""
    eps: float
    n: int
    flags: torch.Tensor = field(compare=False)
    attacks: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        return int(self.flags.sum()) / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        k = int(self.flags.sum())
        return {"eps": self.eps, "n": self.n, "robust": flags_to_str(self.flags), "n_robust": k,
                "accuracy": self.accuracy, "ci95": wilson_interval(k, self.n), "attacks": list(self.attacks) or ["clean"]}


@dataclass(frozen=True)
class EvalRecord:
    """One classifier's evaluation (the dict :func:`genrobust.measure.accuracy.evaluate_classifier` returns), read
    once: the runs, and what the masking checks read beside them."""
    classifier: str
    n: int
    clean: str                        # clean-correct flags as '1'/'0'
    runs: tuple[AttackResult, ...]
    paper_attack: str = ""            # the attack registry's name of the paper's attack for this classifier
    model_checks: dict = field(default_factory=dict, compare=False)   # accuracy.model_checks: n, randomness, ...
    autoattack_warnings: tuple[str, ...] = ()                         # AutoAttack's own checks, as logged

    @classmethod
    def from_dict(cls, d: dict) -> "EvalRecord":
        return cls(d["classifier"], int(d["n"]), d["clean"]["robust"],
                   tuple(AttackResult.from_dict(r) for r in d["runs"]), d.get("paper_attack", ""), dict(d.get("model_checks") or {}),
                   tuple(d.get("autoattack_warnings") or ()))

    @property
    def clean_flags(self) -> torch.Tensor:
        return str_to_flags(self.clean)

    @property
    def clean_accuracy(self) -> float:
        return self.clean.count("1") / self.n if self.n else float("nan")

    def first(self, role: str, eps: Optional[float] = None) -> Optional[AttackResult]:
        """The first run of ``role`` (at ``eps`` when given) in stored order; None where there is none."""
        return next((r for r in self.runs if r.role == role and (eps is None or abs(r.eps - eps) < EPS_TOL)), None)

    def at(self, eps: float, roles: Optional[Iterable[str]] = None) -> list[AttackResult]:
        roles = None if roles is None else tuple(roles)
        return [r for r in self.runs if abs(r.eps - eps) < EPS_TOL and (roles is None or r.role in roles)]

    def paper_runs(self) -> list[AttackResult]:
        """The paper's attack at every eps it ran, ascending eps."""
        return sorted((r for r in self.runs if r.role == "paper"), key=lambda r: r.eps)

    def paper_run(self, eps: float) -> Optional[AttackResult]:
        """The paper's attack (Sec. 3.2: Eq. 11-12 or PGD-CE) at ``eps``; None where it did not run."""
        return next(iter(self.at(eps, ("paper",))), None)

    def paper_flags(self, eps: float) -> torch.Tensor:
        """Robust flags under the paper's attack at eps (the clean flags at eps 0). KeyError where it did not run."""
        if eps == 0:
            return self.clean_flags
        run = self.paper_run(eps)
        if run is None:
            raise KeyError(f"{self.classifier}: no run of the paper's attack at eps {eps:g}")
        return run.flags

    def eps_values(self, roles: Iterable[str] = ROLES_ATTACKED) -> list[float]:
        """The eps with runs of ``roles``, plus 0 (clean), ascending."""
        roles = tuple(roles)
        return sorted({0.0} | {r.eps for r in self.runs if r.role in roles})

    def attacks_at(self, eps: float) -> tuple[str, ...]:
        return tuple(sorted({r.attack for r in self.at(eps)}))

    def worst(self, eps: float, attacks: Optional[Iterable[str]] = None) -> Worst:
        """Per-example AND of the clean flags and every run at ``eps`` (of ``attacks`` when given). eps 0: clean."""
        wanted = None if attacks is None else set(attacks)
        runs = [r for r in self.at(eps) if wanted is None or r.attack in wanted]
        n = min([len(r.robust) for r in runs] + [self.n])
        flags = self.clean_flags[:n]
        for r in runs:
            flags = flags & r.flags[:n]
        return Worst(eps, n, flags, tuple(sorted({r.attack for r in runs})))

    def worst_cases(self, roles: Iterable[str] = ROLES_ATTACKED) -> list[Worst]:
        """:meth:`worst` at every eps of :meth:`eps_values` (eps 0 first: the clean accuracy)."""
        return [self.worst(e) for e in self.eps_values(roles)]


def records(stored: dict) -> dict[str, EvalRecord]:
    """{kind: EvalRecord} of a {kind: stored record} mapping (03's ``classifiers``, or evaluate's return): where
    a stored (dict) record becomes typed, once; EvalRecords pass through."""
    return {kind: rec if isinstance(rec, EvalRecord) else EvalRecord.from_dict(rec) for kind, rec in stored.items()}
