"""AutoAttack's standard attacks (pyautoattack) as pure functions, their own warnings collected.

AutoAttack's standard attacks (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020) through pyautoattack, as pure
functions on [0, 1] images: the model is never changed (parameters frozen inside, the global RNG forked). Their
budgets are one set (:data:`STANDARD_BUDGETS` by default, a mapping overriding some of them otherwise), and
AutoAttack's own sanity-check warnings can be collected (:func:`autoattack_warnings`) instead of printed.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Mapping, Optional

import torch

from .attack_args import AttackError, check_eps, check_int, check_norm

AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
# AutoAttack's standard version (AutoAttack._set_version('standard')): the budgets' values, written only here; the
# attack registry's budget defaults (genrobust.core.registry) read them.
STANDARD_BUDGETS = {"apgd_iters": 100, "targets": 9, "fab_iters": 100, "square_queries": 5000}
_AA_NORM = {"l2": "L2", "linf": "Linf"}


@contextmanager
def _frozen_parameters(model):
    """requires_grad off for every parameter inside the block (restored afterwards): third-party attacks that call
    .backward() on the input then compute no weight gradients and write no parameter .grad."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)


class _Collect(logging.Handler):
    def __init__(self, sink: list):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record):
        msg = record.getMessage()
        if msg not in self.sink:
            self.sink.append(msg)


@contextmanager
def autoattack_warnings(sink: list):
    """AutoAttack reports its own checks (randomness, probabilities as outputs, zero gradients, Square success) as
    logger warnings; inside this block they are collected into ``sink`` (each once, in order: the masking-check
    table shows them) instead of printed."""
    log = logging.getLogger("auto-attack")
    handler, propagate = _Collect(sink), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def budget_set(budgets: Optional[Mapping[str, int]] = None) -> dict[str, int]:
    """AutoAttack's full budget set: :data:`STANDARD_BUDGETS` with ``budgets`` ({name: int >= 1}, some or all of
    its names) over them; an unknown name or a bad value is a one-line AttackError naming it."""
    over = dict(budgets or {})
    unknown = sorted(set(over) - set(STANDARD_BUDGETS))
    if unknown:
        raise AttackError(f"unknown AutoAttack budget(s) {unknown}; allowed: {list(STANDARD_BUDGETS)}")
    return {name: check_int(name, over.get(name, std), 1) for name, std in STANDARD_BUDGETS.items()}


def autoattack(model, x: torch.Tensor, y: torch.Tensor, attack: str, *, eps: float, norm: str = "l2", seed: int = 0,
               budgets: Optional[Mapping[str, int]] = None) -> torch.Tensor:
    """One attack of AutoAttack's standard set ('apgd-ce', 'apgd-t', 'fab-t', 'square') through pyautoattack's
    ``run_standard_evaluation`` on all of x as one batch (chunk a large x yourself, as the evaluation does in
    chunks of eval.batch_size); returns x_adv (N, 3, H, W) in [0, 1] (x itself where the attack failed).

    Standard settings (AutoAttack._set_version('standard')): one restart each, APGD with rho 0.75, FAB-T and APGD-T
    over the ``targets`` most likely wrong classes, Square with p_init 0.8. ``budgets``: the budget set
    (:func:`budget_set`: iterations, targets, queries by name, e.g. ``{"apgd_iters": 50}``; names not given take
    their standard values, :data:`STANDARD_BUDGETS`). AutoAttack's own warnings go to its logger (wrap the call in
    :func:`autoattack_warnings` to collect them). AutoAttack seeds the global torch RNG, so it runs inside
    ``torch.random.fork_rng`` (the caller's RNG state is untouched), with the model's parameters frozen.
    """
    # optional third-party package, imported where it is used (importing genrobust does not need it)
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    if attack not in AUTOATTACK_ATTACKS:
        raise AttackError(f"unknown AutoAttack attack {attack!r}; choose one of {list(AUTOATTACK_ATTACKS)}")
    b, eps, aa_norm = budget_set(budgets), check_eps(eps), _AA_NORM[check_norm(norm)]
    if x.shape[0] == 0:
        return x.clone()
    dev = str(x.device)
    aa = AutoAttack(model, norm=aa_norm, eps=eps, seed=seed, version="standard", device=dev)
    # APGD derives its step-size checkpoints from n_iter at construction: rebuild with the standard arguments.
    aa.apgd = APGDAttack(model, n_restarts=1, n_iter=b["apgd_iters"], verbose=False, eps=eps, norm=aa_norm,
                         eot_iter=1, rho=.75, seed=seed, device=dev, logger=aa.logger)
    aa.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_iter=b["apgd_iters"], verbose=False, eps=eps,
                                           norm=aa_norm, eot_iter=1, rho=.75, seed=seed, device=dev,
                                           n_target_classes=b["targets"], logger=aa.logger)
    aa.fab.n_iter, aa.fab.n_target_classes = b["fab_iters"], b["targets"]
    aa.square.n_queries = b["square_queries"]
    aa.attacks_to_run = [attack]
    with torch.random.fork_rng(devices=[]), _frozen_parameters(model):
        x_adv, _ = aa.run_standard_evaluation(x.detach().contiguous(), y, batch_size=len(x))
    return x_adv.detach()
