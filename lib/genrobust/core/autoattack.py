"""AutoAttack's standard attacks (pyautoattack) as pure functions, their own warnings collected.

AutoAttack's standard attacks (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020) through pyautoattack, as pure
functions on [0, 1] images: the model is never changed (parameters frozen inside, the global RNG forked) and
AutoAttack's own sanity-check warnings are collected instead of printed.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Optional

import torch

from .attacks import AttackError

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
def _autoattack_warnings(sink: list):
    """AutoAttack reports its own checks (randomness, probabilities as outputs, zero gradients, Square success) as
    logger warnings; collect them into ``sink`` for the masking-check table instead of printing them."""
    log = logging.getLogger("auto-attack")
    handler, propagate = _Collect(sink), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def autoattack(model, x: torch.Tensor, y: torch.Tensor, attack: str, *, eps: float, norm: str = "l2", seed: int = 0,
               apgd_iters: int = STANDARD_BUDGETS["apgd_iters"], targets: int = STANDARD_BUDGETS["targets"],
               fab_iters: int = STANDARD_BUDGETS["fab_iters"],
               square_queries: int = STANDARD_BUDGETS["square_queries"],
               batch_size: int = 250, warnings: Optional[list] = None) -> torch.Tensor:
    """One attack of AutoAttack's standard set ('apgd-ce', 'apgd-t', 'fab-t', 'square') through pyautoattack's
    ``run_standard_evaluation``; returns x_adv (N, 3, H, W) in [0, 1] (x itself where the attack failed).

    Standard settings (AutoAttack._set_version('standard')): one restart each, APGD with rho 0.75, FAB-T and APGD-T
    over the ``targets`` most likely wrong classes, Square with p_init 0.8. The budgets (iterations, targets,
    queries) are arguments; the standard values (:data:`STANDARD_BUDGETS`) are the defaults. AutoAttack seeds the global torch RNG, so it runs
    inside ``torch.random.fork_rng`` (the caller's RNG state is untouched), with the model's parameters frozen.
    """
    # optional third-party package, imported where it is used (importing genrobust does not need it)
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    if attack not in AUTOATTACK_ATTACKS:
        raise AttackError(f"unknown AutoAttack attack {attack!r}; choose one of {list(AUTOATTACK_ATTACKS)}")
    if x.shape[0] == 0:
        return x.clone()
    dev, aa_norm = str(x.device), _AA_NORM[norm]
    aa = AutoAttack(model, norm=aa_norm, eps=eps, seed=seed, version="standard", device=dev)
    # APGD derives its step-size checkpoints from n_iter at construction: rebuild with the standard arguments.
    aa.apgd = APGDAttack(model, n_restarts=1, n_iter=apgd_iters, verbose=False, eps=eps, norm=aa_norm, eot_iter=1,
                         rho=.75, seed=seed, device=dev, logger=aa.logger)
    aa.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_iter=apgd_iters, verbose=False, eps=eps,
                                           norm=aa_norm, eot_iter=1, rho=.75, seed=seed, device=dev,
                                           n_target_classes=targets, logger=aa.logger)
    aa.fab.n_iter, aa.fab.n_target_classes = fab_iters, targets
    aa.square.n_queries = square_queries
    aa.attacks_to_run = [attack]
    sink = [] if warnings is None else warnings
    with torch.random.fork_rng(devices=[]), _frozen_parameters(model), _autoattack_warnings(sink):
        x_adv, _ = aa.run_standard_evaluation(x.detach().contiguous(), y, batch_size=batch_size)
    return x_adv.detach()


