"""The attack registry (timm-style): every attack an evaluation can run, by name, with its label, the function that
runs it, which classifiers it applies to and what kind of evidence it gives. Planning (which runs an evaluation
makes), labels, tables, figures and the masking checks all read :data:`ATTACKS`; adding an attack is one entry.

Every entry's ``run`` has one signature: ``run(model, x, y, *, eps, norm, steps, step_size, restarts, seed,
generator, budgets, warnings) -> x_adv`` with x, x_adv (N, 3, H, W) in [0, 1]; ``budgets`` holds AutoAttack's
settings (iterations, targets, queries; an ``EvalConfig``), ignored by our PGD attacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
                               black_box=_name == "square", strong=True))

# Sec. 3.2: PGD on cross-entropy (Eq. 10) for the softmax classifier, the adaptive attack of Eq. 11-12 for the
# generative classifier.
PAPER_ATTACK = {"generative": "eq11_12", "softmax": "pgd"}
STRONG_ATTACKS = tuple(n for n, s in ATTACKS.items() if s.family == "autoattack") + \
    tuple(n for n, s in ATTACKS.items() if s.strong and s.family != "autoattack")
# Labels of everything a table row can name: the attacks, the clean pass and the per-example worst case.
ATTACK_LABELS = {"clean": "clean", **{n: s.label for n, s in ATTACKS.items()}, "worst": "worst case"}


def attack_spec(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; registered: {list(ATTACKS)}")
    return ATTACKS[name]
