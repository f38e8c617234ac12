"""The attack registry (timm-style): every attack an evaluation can run, by name, with its label, the function that
runs it, which classifiers it applies to, what kind of evidence it gives, and what it owns: its budgets, the
settings that go into its work units' keys and its records, and how the masking check 'more steps' (and the cost
estimate's probe) scale it. Planning (which runs an evaluation makes), unit keys, records, labels, tables, figures,
the masking checks and config's choices all read :data:`ATTACKS`; adding an attack is one entry (and its tests:
the contract tests are parametrized over this registry).

Two kinds of settings:

* a PGD-style attack with no budgets of its own (``budgets=()``) takes the profile's PGD settings (eval.steps,
  eval.step_size, eval.restarts); its key and record carry steps, step size and restarts;
* an attack with budgets (AutoAttack's: iterations, targets, queries) carries them here, their defaults its standard
  version; a profile overrides them by name (``eval.budgets``, e.g. the cpu profile's APGD 50 iterations), and its
  key and record carry exactly its own budgets, so a change of one budget re-keys exactly the units it affects.

Every entry's ``run`` has one signature: ``run(model, x, y, *, eps, norm, steps, step_size, restarts, seed,
generator, budgets, warnings) -> x_adv`` with x, x_adv (N, 3, H, W) in [0, 1]; ``budgets`` is the attack's own
{name: value} (empty for a PGD-style attack, whose settings are steps, step_size and restarts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .attacks import default_step_size, eq11_12_attack, multi_targeted, pgd_untargeted
from .autoattack import AUTOATTACK_ATTACKS, autoattack

CLASSIFIER_KINDS = ("generative", "softmax")


@dataclass(frozen=True)
class Budget:
    """One budget an attack owns: its name (shared by the attacks that share it, as APGD-CE and APGD-T share
    AutoAttack's APGD iterations), its default and its upper bound. ``scales``: the 'more steps' check multiplies it
    (iterations, queries) or leaves it (the number of target classes)."""
    name: str
    default: int
    doc: str
    hi: Optional[int] = None
    scales: bool = True


@dataclass(frozen=True)
class AttackSpec:
    name: str
    label: str                     # how tables and figures name it
    run: Callable                  # see the module docstring
    applies_to: tuple[str, ...]    # classifier kinds it can attack
    family: str                    # "ours" (genrobust.core.attacks) or "autoattack" (pyautoattack)
    black_box: bool = False        # uses no gradients (Square): the masking checks compare it with the white-box
    strong: bool = False           # one of the stronger attacks run at eval.strong_eps beside the paper's
    budgets: tuple[Budget, ...] = ()  # its own budgets; () = PGD-style, the profile's eval.steps/step_size/restarts
    probe_divisor: int = 5         # the cost estimate's probe runs 1/this of its scaled budgets (or steps)

    @property
    def pgd_style(self) -> bool:
        return not self.budgets

    def settings(self, ecfg) -> dict:
        """The fields of an AttackRun this attack takes from an eval config: steps, step size and restarts of a
        PGD-style attack, else its budgets ((name, value) pairs in declaration order, eval.budgets overriding the
        defaults). AttackRun's other fields (eps, n, role, seed) are the planner's."""
        if self.pgd_style:
            return {"steps": ecfg.steps, "step_size": ecfg.step_size, "restarts": ecfg.restarts}
        over = dict(ecfg.budgets)
        return {"budgets": tuple((b.name, int(over.get(b.name, b.default))) for b in self.budgets)}

    def key_settings(self, run) -> dict:
        """What of ``run`` (an AttackRun) goes into its units' keys beside eps, norm, seed and the shard: exactly
        the settings this attack reads."""
        if self.pgd_style:
            return {"steps": run.steps, "step_size": run.step_size, "restarts": run.restarts}
        return {"budgets": dict(run.budgets)}

    def record_settings(self, run) -> dict:
        """What of ``run`` its record states beside the AttackRun's fields: the step size used (2.5 eps / steps when
        None) of a PGD-style attack, the budgets of the others."""
        if self.pgd_style:
            return {"step_size": default_step_size(run.eps, run.steps) if run.step_size is None else run.step_size}
        return {"budgets": dict(run.budgets)}

    def scaled(self, run, mul: int = 1, div: int = 1) -> Optional[dict]:
        """The AttackRun changes that scale this attack's effort by mul / div (integer arithmetic, at least 1):
        the steps of a PGD-style attack, the scaling budgets (iterations, queries) of the others. None when it has
        nothing to scale (no steps, or no scaling budget): the masking check 'more steps' does not apply to it, and
        the cost probe runs it at its full budget. Used by 'more steps' (mul = eval.masking_steps_factor) and by the
        cost estimate's probe (div = probe_divisor)."""
        if self.pgd_style:
            return None if run.steps is None else {"steps": max(1, run.steps * mul // div)}
        scales = {b.name for b in self.budgets if b.scales}
        if not scales:
            return None
        return {"budgets": tuple((n, max(1, v * mul // div) if n in scales else v) for n, v in run.budgets)}

    def effort(self, run) -> int:
        """The sum of what :meth:`scaled` scales (steps, or the scaling budgets): the probe's time is scaled back
        up by effort(run) / effort(probe)."""
        if self.pgd_style:
            return int(run.steps or 1)
        scales = {b.name for b in self.budgets if b.scales}
        return sum(v for n, v in run.budgets if n in scales) or 1


def _ours(fn) -> Callable:
    def run(model, x, y, *, eps, norm, steps, step_size, restarts, seed, generator, budgets, warnings):
        return fn(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size, random_start=restarts > 1,
                  restarts=restarts, generator=generator)
    return run


def _autoattack(name: str) -> Callable:
    def run(model, x, y, *, eps, norm, steps, step_size, restarts, seed, generator, budgets, warnings):
        # only this attack's own budgets are passed; autoattack() runs this attack alone, the rest is unused
        return autoattack(model, x, y, name, eps=eps, norm=norm, seed=seed, batch_size=len(x), warnings=warnings,
                          **budgets)
    return run


ATTACKS: dict[str, AttackSpec] = {}
# Labels of everything a table row can name: the attacks, the clean pass and the per-example worst case.
ATTACK_LABELS: dict[str, str] = {"clean": "clean", "worst": "worst case"}
BUDGETS: dict[str, Budget] = {}  # every budget of every registered attack, by name (config's eval.budgets choices)


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add ``spec`` to :data:`ATTACKS` (and its budgets to :data:`BUDGETS`; a budget name two attacks share must
    be declared the same by both)."""
    if spec.name in ATTACKS:
        raise ValueError(f"attack {spec.name!r} is registered twice")
    for b in spec.budgets:
        if b.name in BUDGETS and BUDGETS[b.name] != b:
            raise ValueError(f"attack {spec.name!r}: budget {b.name!r} differs from the one registered as "
                             f"{BUDGETS[b.name]}")
    ATTACKS[spec.name] = spec
    ATTACK_LABELS[spec.name] = spec.label
    for b in spec.budgets:
        BUDGETS.setdefault(b.name, b)
    return spec


def unregister_attack(name: str) -> AttackSpec:
    """Remove an attack (and the budgets no other attack declares); for tests that register a throwaway one."""
    spec = ATTACKS.pop(name)
    ATTACK_LABELS.pop(name, None)
    used = {b.name for s in ATTACKS.values() for b in s.budgets}
    for b in spec.budgets:
        if b.name not in used:
            BUDGETS.pop(b.name, None)
    return spec


# AutoAttack's standard version (AutoAttack._set_version('standard')): its budgets' defaults.
APGD_ITERS = Budget("apgd_iters", 100, "APGD-CE / APGD-T iterations (standard: 100)")
TARGETS = Budget("targets", 9, "target classes of APGD-T and FAB-T, most likely first (standard: 9)", hi=9,
                 scales=False)
FAB_ITERS = Budget("fab_iters", 100, "FAB-T iterations (standard: 100)")
SQUARE_QUERIES = Budget("square_queries", 5000, "Square queries (standard: 5000)")
_AA_BUDGETS = {"apgd-ce": (APGD_ITERS,), "apgd-t": (APGD_ITERS, TARGETS), "fab-t": (FAB_ITERS, TARGETS),
               "square": (SQUARE_QUERIES,)}

register_attack(AttackSpec("pgd", "PGD-CE (Eq. 10)", _ours(pgd_untargeted), CLASSIFIER_KINDS, "ours"))
register_attack(AttackSpec("eq11_12", "Eq. 11-12", _ours(eq11_12_attack), ("generative",), "ours"))
register_attack(AttackSpec("multi_targeted", "multi-targeted", _ours(multi_targeted), CLASSIFIER_KINDS, "ours",
                           strong=True))
for _name, _label in zip(AUTOATTACK_ATTACKS, ("APGD-CE", "APGD-T", "FAB-T", "Square")):
    register_attack(AttackSpec(_name, _label, _autoattack(_name), CLASSIFIER_KINDS, "autoattack",
                               black_box=_name == "square", strong=True, budgets=_AA_BUDGETS[_name],
                               probe_divisor=10))

# Sec. 3.2: PGD on cross-entropy (Eq. 10) for the softmax classifier, the adaptive attack of Eq. 11-12 for the
# generative classifier.
PAPER_ATTACK = {"generative": "eq11_12", "softmax": "pgd"}


def strong_attacks() -> tuple[str, ...]:
    """The registered strong attacks, AutoAttack's first (the order of eval.strong_attacks' default), read now:
    an attack registered later is included."""
    return tuple(n for n, s in ATTACKS.items() if s.strong and s.family == "autoattack") + \
        tuple(n for n, s in ATTACKS.items() if s.strong and s.family != "autoattack")


# The strong attacks registered at import (config's default eval.strong_attacks).
STRONG_ATTACKS = strong_attacks()


def attack_spec(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; registered: {list(ATTACKS)}")
    return ATTACKS[name]
