"""The attack registry: name -> function, label, classifiers it applies to, white/black box, and what the attack owns:
its budgets, its settings in unit keys and records, how 'more steps' and the cost probe scale it, its passes per
attacked image; config's attack choices and budget names are read from it; the named evaluation budgets (quick / cpu /
standard, `--budget`)

The attack registry (timm-style): every attack an evaluation can run, by name, with its label, the function that
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

Every entry's ``run`` has one signature: ``run(model, x, y, call) -> x_adv`` with x, x_adv (N, 3, H, W) in [0, 1]
and ``call`` an :class:`AttackCall` (eps, norm, the PGD settings, seeds, the attack's own budgets, where its warnings
go).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch

from .attacks import default_step_size, eq11_12_attack, multi_targeted, pgd_untargeted
from .autoattack import AUTOATTACK_ATTACKS, STANDARD_BUDGETS, autoattack, autoattack_warnings
from .cifar10 import NUM_CLASSES

CLASSIFIER_KINDS = ("generative", "softmax")


@dataclass(frozen=True)
class AttackCall:
    """What an entry's ``run`` is given beside the model and the batch: the threat model (eps in [0, 1] pixel units,
    norm), a PGD-style attack's settings (steps, step_size: None = 2.5 * eps / steps, restarts), the seeds (``seed``
    for an attack that seeds itself, ``generator`` for ours), the attack's own budgets ({name: value}; empty for a
    PGD-style attack) and the list its own warnings are collected into (None: dropped)."""
    eps: float
    norm: str
    steps: Optional[int] = None
    step_size: Optional[float] = None
    restarts: int = 1
    seed: int = 0
    generator: Optional[torch.Generator] = None
    budgets: Mapping[str, int] = field(default_factory=dict)
    warnings: Optional[list] = None


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
    # forward+backward passes of the attacked network per attacked image, as a function of (run, K classes): what
    # `evaluate --model`'s cost estimate multiplies by the measured seconds per image-step (None: steps x restarts)
    passes: Optional[Callable] = None

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

    def image_steps(self, run, num_classes: int = 10) -> float:
        """Forward+backward passes of the attacked network per attacked image of ``run`` (an AttackRun): the
        image-steps the cost estimate counts (an attack that stops early on broken images costs less)."""
        if self.passes is not None:
            return float(self.passes(run, num_classes))
        return float((run.steps or 1) * max(1, run.restarts))

    def effort(self, run) -> int:
        """The sum of what :meth:`scaled` scales (steps, or the scaling budgets): the probe's time is scaled back
        up by effort(run) / effort(probe)."""
        if self.pgd_style:
            return int(run.steps or 1)
        scales = {b.name for b in self.budgets if b.scales}
        return sum(v for n, v in run.budgets if n in scales) or 1


def _ours(fn) -> Callable:
    def run(model, x, y, c: AttackCall):
        return fn(model, x, y, eps=c.eps, norm=c.norm, steps=c.steps, step_size=c.step_size,
                  random_start=c.restarts > 1, restarts=c.restarts, generator=c.generator)
    return run


def _autoattack(name: str) -> Callable:
    def run(model, x, y, c: AttackCall):
        # only this attack's own budgets are passed (autoattack() runs this attack alone, the rest is unused); its
        # warnings go to c.warnings, or nowhere when that is None
        with autoattack_warnings([] if c.warnings is None else c.warnings):
            return autoattack(model, x, y, name, eps=c.eps, norm=c.norm, seed=c.seed, budgets=c.budgets)
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


# AutoAttack's budgets, their defaults its standard version (genrobust.core.autoattack.STANDARD_BUDGETS). At most 9
# targets: CIFAR-10's other classes.
_STD = STANDARD_BUDGETS
APGD_ITERS = Budget("apgd_iters", _STD["apgd_iters"], f"APGD-CE / APGD-T iterations (standard: {_STD['apgd_iters']})")
TARGETS = Budget("targets", _STD["targets"], f"target classes of APGD-T and FAB-T, most likely first (standard: "
                 f"{_STD['targets']})", hi=NUM_CLASSES - 1, scales=False)
FAB_ITERS = Budget("fab_iters", _STD["fab_iters"], f"FAB-T iterations (standard: {_STD['fab_iters']})")
SQUARE_QUERIES = Budget("square_queries", _STD["square_queries"],
                        f"Square queries (standard: {_STD['square_queries']})")
_AA_BUDGETS = {"apgd-ce": (APGD_ITERS,), "apgd-t": (APGD_ITERS, TARGETS), "fab-t": (FAB_ITERS, TARGETS),
               "square": (SQUARE_QUERIES,)}

# Forward+backward passes per attacked image (AttackSpec.passes): Eq. 11-12 steps K - 1 sub-models of K, one each;
# multi-targeted one run per wrong class; APGD-T and FAB-T one run per target. An APGD iteration costs ~1.5 PGD
# steps through pyautoattack (measured 1.5-1.7x on a CIFAR ResNet18, 16 images, 10 iterations, eps 1e-3 so nothing
# stops early; benchmarks/logs/cpu-2026-12-06-own-model-quick). FAB (about two passes per iteration) and Square
# (forwards only, a third of a pass each) are assumed, not measured.
APGD_PASS = 1.5
_PASSES = {
    "eq11_12": lambda r, k: (r.steps or 1) * r.restarts * (k - 1) / k,
    "multi_targeted": lambda r, k: (r.steps or 1) * r.restarts * (k - 1),
    "apgd-ce": lambda r, k: APGD_PASS * dict(r.budgets)["apgd_iters"],
    "apgd-t": lambda r, k: APGD_PASS * dict(r.budgets)["apgd_iters"] * dict(r.budgets)["targets"],
    "fab-t": lambda r, k: 2 * dict(r.budgets)["fab_iters"] * dict(r.budgets)["targets"],
    "square": lambda r, k: dict(r.budgets)["square_queries"] / 3,
}

register_attack(AttackSpec("pgd", "PGD-CE (Eq. 10)", _ours(pgd_untargeted), CLASSIFIER_KINDS, "ours"))
register_attack(AttackSpec("eq11_12", "Eq. 11-12", _ours(eq11_12_attack), ("generative",), "ours",
                           passes=_PASSES["eq11_12"]))
register_attack(AttackSpec("multi_targeted", "multi-targeted", _ours(multi_targeted), CLASSIFIER_KINDS, "ours",
                           strong=True, passes=_PASSES["multi_targeted"]))
for _name, _label in zip(AUTOATTACK_ATTACKS, ("APGD-CE", "APGD-T", "FAB-T", "Square")):
    register_attack(AttackSpec(_name, _label, _autoattack(_name), CLASSIFIER_KINDS, "autoattack",
                               black_box=_name == "square", strong=True, budgets=_AA_BUDGETS[_name],
                               probe_divisor=10, passes=_PASSES[_name]))

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


# ---------------------------------------------------------------------------------------------------------------
# Named evaluation budgets (auto-attack's version='standard' | 'plus' | 'rand'): `genrobust evaluate --budget NAME`
# picks one, the record stores its name. Not to be confused with an attack's own budgets above (iterations, targets,
# queries), which an evaluation budget sets through eval.budgets.
# AutoAttack's budgets of the cpu and gpu profiles (the registry's defaults are its standard version)
REDUCED_AUTOATTACK = (("apgd_iters", 50), ("targets", 3), ("fab_iters", 50), ("square_queries", 500))


@dataclass(frozen=True)
class EvalBudget:
    """One named evaluation budget: the eval settings it fixes. ``settings``: (eval field, value) pairs; applied
    over a profile by :func:`genrobust.pipeline.params.apply_budget`, where every *measurement* field it does not
    name takes EvalConfig's default (so a budget means the same attacks on every profile) and the execution fields
    (batch size, shards, channels-last) keep the profile's unless it names them."""
    name: str
    doc: str               # one line: what it runs, for whom
    sized_for: str         # where its time was measured or projected
    settings: tuple[tuple[str, object], ...]

    def as_dict(self) -> dict:
        return dict(self.settings)


EVAL_BUDGETS: dict[str, EvalBudget] = {}


def register_budget(budget: EvalBudget) -> EvalBudget:
    """Add ``budget`` to :data:`EVAL_BUDGETS` (its settings are validated where it is applied; the contract test
    applies every registered budget to every profile)."""
    if budget.name in EVAL_BUDGETS:
        raise ValueError(f"evaluation budget {budget.name!r} is registered twice")
    EVAL_BUDGETS[budget.name] = budget
    return budget


def eval_budget(name: str) -> EvalBudget:
    if name not in EVAL_BUDGETS:
        raise KeyError(f"unknown evaluation budget {name!r}; choose one of {list(EVAL_BUDGETS)}")
    return EVAL_BUDGETS[name]


# quick: the paper's PGD-CE (10 steps) on 100 images and, on the first 40, the two strongest attacks of AutoAttack
# (APGD-CE, APGD-T: 20 iterations, top-3 targets) and the masking checks at their smallest (2x steps, 2 restarts),
# all at L2 eps 0.5. About 180 forward+backward passes per attacked image of the 40 and 10 for the other 60: for a
# CIFAR ResNet18 (~0.03 s per pass per core here, idle; ~0.1 s with the 2 cores shared four ways) ~6,300
# image-steps. On 2 cores loaded by other work (load ~8) 100 images of ResNet18 with 50 for the strong attacks took
# 9.6 min, so the strong set is 40 (benchmarks/logs/cpu-2026-12-06-own-model-quick).
register_budget(EvalBudget(
    "quick", "minutes on a laptop CPU: L2 eps 0.5, the paper's PGD-CE (10 steps) on 100 images, APGD-CE + APGD-T "
             "(20 it., 3 targets) and the smallest masking checks on 40; a first look (intervals up to +-16 points)",
    "2 CPU cores shared with other work, a CIFAR ResNet18 (11M parameters)",
    (("eps_grid", (0.0, 0.5)), ("n_test", 100), ("n_strong", 40), ("steps", 10), ("strong_eps", 0.5),
     ("strong_eps_more", ()), ("strong_attacks", ("apgd-ce", "apgd-t")),
     ("budgets", (("apgd_iters", 20), ("targets", 3))), ("masking_steps_factor", 2), ("masking_restarts", 2),
     ("batch_size", 50), ("shard_batches", 1), ("units_per_job", 1))))
# cpu: the cpu profile's notebook 03 (its sizing: docs/profiles.md, 'cpu: evaluation').
register_budget(EvalBudget(
    "cpu", "the cpu profile's notebook 03: the paper's attack over 6 eps on 1,000 images, AutoAttack (reduced: APGD "
           "50 it., 3 targets, FAB-T 50 it., Square 500) + multi-targeted on 250 at eps 0.25, 0.5, 1.0",
    "2 CPU cores: our cpu-profile models ~40 min; a CIFAR ResNet18 ~8.7 h on one core (projected, issue 40)",
    (("n_test", 1000), ("steps", 20), ("n_strong", 250), ("strong_eps_more", (0.25, 1.0)),
     ("budgets", REDUCED_AUTOATTACK), ("shard_batches", 1), ("units_per_job", 4))))
# standard: AutoAttack's standard version (its four attacks at their standard budgets) and multi-targeted, on the
# whole test set, with the paper's attack over the eps grid: for a GPU.
register_budget(EvalBudget(
    "standard", "AutoAttack's standard budgets (APGD-CE, APGD-T, FAB-T, Square) + multi-targeted on all 10,000 "
                "test images at eps 0.5, the paper's attack over 6 eps: for a GPU",
    "one GPU (hours for a ResNet18)",
    (("n_test", 10000), ("n_strong", 10000), ("steps", 20), ("budgets", ()), ("batch_size", 500),
     ("channels_last", False))))
