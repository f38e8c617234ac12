"""The attack registry (timm-style): every attack an evaluation can run, by name, with its label, the function that
runs it, which classifiers it applies to, what kind of evidence it gives, and everything that varies with it: its
settings (PGD-style steps / step size / restarts, or budgets read from the eval config), what of them keys its
work units and is recorded with its runs, and how the cost probe shrinks it. Planning, unit keys, records, cost
estimates, labels, tables, figures, the masking checks and config's choices all read :data:`ATTACKS`; adding an
attack is one entry (tests/test_accuracy.py runs its contract over every entry).

Every entry's ``run`` has one signature: ``run(model, x, y, *, eps, norm, steps, step_size, restarts, seed,
generator, budgets, warnings) -> x_adv`` with x, x_adv (N, 3, H, W) in [0, 1]; ``budgets`` holds AutoAttack's
settings (iterations, targets, queries; an ``EvalConfig``), ignored by our PGD attacks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .attacks import eq11_12_attack, multi_targeted, pgd_untargeted
from .autoattack import AUTOATTACK_ATTACKS, autoattack

CLASSIFIER_KINDS = ("generative", "softmax")


@dataclass(frozen=True)
class AttackSpec:
    name: str
    label: str                     # how tables and figures name it
    run: Callable                  # see the module docstring
    applies_to: tuple[str, ...]    # classifier kinds it can attack
    family: str                    # "ours" (genrobust.core.attacks) or "autoattack" (pyautoattack)
    black_box: bool = False        # uses no gradients (Square): the masking checks compare it with the white-box
    strong: bool = False           # one of the stronger attacks run at eval.strong_eps beside the paper's
    iterative: bool = True         # takes eval.steps / step_size / restarts (our PGD family)
    budgets: Optional[Callable[[Any], dict]] = None     # eval config -> its own budgets (AutoAttack's iterations...)
    shrink: Optional[Callable[[Any, int], Any]] = None  # (eval config, f) -> the config with budgets / f (cost probe)
    record_budgets_as: str = "budgets"                  # the key its budgets are recorded under in a run's record
    record_extra: tuple = ()                            # (key, value) pairs recorded beside its budgets
    probe_factor: int = 5                               # the cost probe runs 1 / probe_factor of its iterations

    def settings(self, run, ecfg) -> dict:
        """What a run's result depends on beyond attack, eps, norm and seed: the work-unit key's settings."""
        out = dict(steps=run.steps, step_size=run.step_size, restarts=run.restarts) if self.iterative else {}
        if self.budgets is not None:
            out["budgets"] = self.budgets(ecfg)
        return out

    def recorded(self, ecfg) -> dict:
        """What a run's record holds about this attack's budgets ({} for an attack without any)."""
        if self.budgets is None:
            return {}
        return {self.record_budgets_as: {**dict(self.record_extra), **self.budgets(ecfg)}}

    def probe(self, run, ecfg) -> tuple[Any, Any, float]:
        """(run, eval config, cost multiplier) of a cheaper run with the same per-iteration cost: iterations /
        probe_factor, scaled back up by the multiplier (how evaluations estimate their time before they start)."""
        factor = self.probe_factor
        if self.budgets is not None and self.shrink is not None:
            return run, self.shrink(ecfg, factor), float(factor)
        if self.iterative and run.steps:
            steps = max(1, run.steps // factor)
            return dataclasses.replace(run, steps=steps), ecfg, run.steps / steps
        return run, ecfg, 1.0  # nothing to shrink: the probe is the run itself


def _ours(fn) -> Callable:
    def run(model, x, y, *, eps, norm, steps, step_size, restarts, seed, generator, budgets, warnings):
        return fn(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size, random_start=restarts > 1,
                  restarts=restarts, generator=generator)
    return run


def _autoattack(name: str) -> Callable:
    def run(model, x, y, *, eps, norm, steps, step_size, restarts, seed, generator, budgets, warnings):
        return autoattack(model, x, y, name, eps=eps, norm=norm, seed=seed, apgd_iters=budgets.aa_apgd_iters,
                          targets=budgets.aa_targets, fab_iters=budgets.aa_fab_iters,
                          square_queries=budgets.aa_square_queries, batch_size=len(x), warnings=warnings)
    return run


def _autoattack_budgets(ecfg) -> dict:
    return {"apgd_iters": ecfg.aa_apgd_iters, "targets": ecfg.aa_targets, "fab_iters": ecfg.aa_fab_iters,
            "square_queries": ecfg.aa_square_queries}


def _autoattack_shrink(ecfg, f: int):
    return dataclasses.replace(ecfg, aa_apgd_iters=max(1, ecfg.aa_apgd_iters // f),
                               aa_fab_iters=max(1, ecfg.aa_fab_iters // f),
                               aa_square_queries=max(1, ecfg.aa_square_queries // f))


ATTACKS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    if spec.name in ATTACKS:
        raise ValueError(f"attack {spec.name!r} is registered twice")
    ATTACKS[spec.name] = spec
    return spec


register_attack(AttackSpec("pgd", "PGD-CE (Eq. 10)", _ours(pgd_untargeted), CLASSIFIER_KINDS, "ours"))
register_attack(AttackSpec("eq11_12", "Eq. 11-12", _ours(eq11_12_attack), ("generative",), "ours"))
register_attack(AttackSpec("multi_targeted", "multi-targeted", _ours(multi_targeted), CLASSIFIER_KINDS, "ours",
                           strong=True))
for _name, _label in zip(AUTOATTACK_ATTACKS, ("APGD-CE", "APGD-T", "FAB-T", "Square")):
    register_attack(AttackSpec(_name, _label, _autoattack(_name), CLASSIFIER_KINDS, "autoattack",
                               black_box=_name == "square", strong=True, iterative=False,
                               budgets=_autoattack_budgets, shrink=_autoattack_shrink,
                               record_budgets_as="autoattack", record_extra=(("version", "standard"),),
                               probe_factor=10))

# Sec. 3.2: PGD on cross-entropy (Eq. 10) for the softmax classifier, the adaptive attack of Eq. 11-12 for the
# generative classifier.
PAPER_ATTACK = {"generative": "eq11_12", "softmax": "pgd"}
def strong_attack_names() -> tuple[str, ...]:
    """The registered stronger attacks, AutoAttack's first (read live: config validates eval.strong_attacks
    against it, so an attack registered later is a valid choice)."""
    return tuple(n for n, s in ATTACKS.items() if s.family == "autoattack") + \
        tuple(n for n, s in ATTACKS.items() if s.strong and s.family != "autoattack")


STRONG_ATTACKS = strong_attack_names()  # the default set: every stronger attack registered here
# Labels of everything a table row can name: the attacks, the clean pass and the per-example worst case.
ATTACK_LABELS = {"clean": "clean", **{n: s.label for n, s in ATTACKS.items()}, "worst": "worst case"}


def attack_spec(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; registered: {list(ATTACKS)}")
    return ATTACKS[name]
