"""The PGD engine: ascent of a per-example objective with restarts and per-example selection (maximize, pgd_score);
the model-state guards (eval_mode, frozen_state, global RNG restored)

The PGD engine every attack runs on: ascent of a per-example objective in the eps-ball with restarts and
per-example selection (:func:`maximize`, :func:`pgd_score`), and the model-state guards around it (eval_mode,
frozen buffers, the global RNG restored).

The guarantees it gives every attack (no mode switch, no parameter ``.grad``, buffers and global RNG restored,
deterministic for a generator seed) are listed in :mod:`genrobust.core.attacks`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn

from .attack_args import AttackError, PGDSettings, begin_attack, check_grad_mode
from .attack_steps import ascent_step, per_example, project, random_start

__all__ = ["ScoreFn", "eval_mode", "frozen_state", "attack_context", "chunks", "improves", "maximize_chunk",
           "maximize", "pgd_score"]

# score(model, x_adv) -> (N,) objective to maximize; select(model, x_adv) -> (N,) "larger = better for the attacker".
ScoreFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------------
# Model-state context managers.
@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside the block; afterwards every submodule gets back its own previous training flag
    (a plain ``model.train(was_training)`` would wrongly flip submodules that were deliberately left in eval)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def frozen_state(model: nn.Module) -> Iterator[nn.Module]:
    """Snapshot every buffer (BN running_mean/var, num_batches_tracked, calibration c, ...) and restore the values
    on exit -- so forward passes of an attack on a train-mode model cannot change BN statistics. The original
    tensor objects are kept (restored in place), so outside references to the buffers stay valid."""
    saved = []
    for mod in model.modules():
        for key, buf in mod._buffers.items():
            if buf is not None:
                saved.append((mod, key, buf, buf.detach().clone()))
    try:
        yield model
    finally:
        with torch.no_grad():
            for mod, key, buf, value in saved:
                mod._buffers[key] = buf  # in case the module re-assigned the attribute
                buf.copy_(value)


@contextmanager
def attack_context(model: nn.Module, x: torch.Tensor):
    """What every public attack runs inside: autograd on (even under no_grad), buffers frozen, global RNG state
    restored (model-internal randomness such as train-mode dropout may draw from it; the attack itself never does)."""
    check_grad_mode()
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad(), frozen_state(model):
        yield


def chunks(n: int, batch_size: Optional[int]) -> list[slice]:
    if batch_size is None or n <= batch_size:
        return [slice(0, n)]
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


# ----------------------------------------------------------------------------------------------------------------
# The engine.
def _input_grad(model: nn.Module, score: ScoreFn, x_adv: torch.Tensor) -> torch.Tensor:
    """d score(model, x_adv).sum() / d x_adv: (N, 3, H, W). Only the input requires grad here, and autograd.grad
    w.r.t. the input alone neither computes weight gradients nor writes any parameter's .grad."""
    x_adv = x_adv.detach().requires_grad_(True)
    s = score(model, x_adv)
    if not isinstance(s, torch.Tensor) or s.shape != (x_adv.shape[0],):
        raise AttackError(f"score must return a (N,) = ({x_adv.shape[0]},) tensor, got "
                          f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}")
    if not s.requires_grad:  # objective independent of the input: no direction to follow
        return torch.zeros_like(x_adv)
    (g,) = torch.autograd.grad(s.sum(), x_adv, allow_unused=True)
    return torch.zeros_like(x_adv) if g is None else g


def _evaluate(select: ScoreFn, model: nn.Module, x_adv: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        v = select(model, x_adv)
    if not isinstance(v, torch.Tensor) or v.shape != (x_adv.shape[0],):
        raise AttackError(f"select must return a (N,) = ({x_adv.shape[0]},) tensor, got "
                          f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
    return v.detach().float()


def improves(v: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """(N,) bool: v strictly better than best (ties keep the earlier candidate; a number beats a NaN, not vice versa)."""
    return (v > best) | (torch.isnan(best) & ~torch.isnan(v))


def maximize_chunk(model, score: ScoreFn, select: ScoreFn, x: torch.Tensor, cfg: PGDSettings, need_value: bool):
    """PGD with restarts on one chunk. Returns (x_adv (N,3,H,W), value (N,) of select at x_adv, or None).

    Per restart: delta from 0 or random_start; then ``steps`` times: ascent step on score.sum(), project onto the
    eps-ball, clamp x + delta to [0, 1] and re-derive delta = x_adv - x (clamping only moves x_adv towards x
    coordinate-wise, so the projection's norm bound survives). The final iterate is the restart's candidate; per
    example the candidate with the largest select value wins (the first restart wins ties and NaNs).
    """
    best_x, best_v = x.clone(), None
    for r in range(cfg.restarts):
        delta = random_start(x, cfg.norm, cfg.eps, cfg.generator) if cfg.random_start else torch.zeros_like(x)
        x_adv = (x + project(delta, cfg.norm, cfg.eps)).clamp(0.0, 1.0)
        for _ in range(cfg.steps):
            g = _input_grad(model, score, x_adv)
            delta = ascent_step(x_adv - x, g, cfg.norm, cfg.step_size)
            x_adv = (x + project(delta, cfg.norm, cfg.eps)).clamp(0.0, 1.0).detach()
        if cfg.restarts == 1 and not need_value:
            return x_adv, None
        v = _evaluate(select, model, x_adv)
        if r == 0:
            best_x, best_v = x_adv, v
        else:
            better = improves(v, best_v)
            best_x = torch.where(per_example(better, x_adv), x_adv, best_x)
            best_v = torch.where(better, v, best_v)
    return best_x, best_v


def maximize(model: nn.Module, score: ScoreFn, x: torch.Tensor, *, select: Optional[ScoreFn] = None,
             **kw) -> torch.Tensor:
    """PGD ascent of a per-example objective within the eps-ball; returns x_adv (N, 3, H, W) in [0, 1].

    score(model, x_adv) -> (N,) is maximized (gradient of its sum w.r.t. the input only); select(model, x_adv) ->
    (N,) picks, per example, the best restart (default: score; larger = better for the attacker). kw: the common
    keyword arguments of every attack (eps required; norm, steps, step_size, random_start, restarts, generator,
    batch_size, check_values: module docstring of genrobust.core.attacks), checked once by
    :func:`~genrobust.core.attack_args.begin_attack` as for the other attacks. The model's mode is used as is (wrap
    in :func:`eval_mode` to attack in eval mode). eps == 0 returns x.clone().
    """
    x, cfg = begin_attack(x, kw, [], None)
    if not callable(score):
        raise AttackError(f"score must be a callable score(model, x_adv) -> (N,), got {type(score).__name__}")
    if select is not None and not callable(select):
        raise AttackError(f"select must be None or a callable select(model, x_adv) -> (N,), got {type(select).__name__}")
    if cfg is None:
        return x
    select = score if select is None else select
    out = []
    with attack_context(model, x):
        for sl in chunks(x.shape[0], cfg.batch_size):
            out.append(maximize_chunk(model, score, select, x[sl], cfg, need_value=False)[0])
    return torch.cat(out)


def pgd_score(model: nn.Module, score: ScoreFn, x: torch.Tensor, *, minimize: bool = False, **kw) -> torch.Tensor:
    """PGD on a scalar score such as d_k: maximize it (or minimize it with ``minimize=True``).

    Examples: ``pgd_score(gen, lambda m, z: m.d(z, k), x, eps=0.5)`` (Eq. 11 for one k);
    ``pgd_score(binary_model, lambda m, z: m(z)[:, 0], x, eps=0.3, minimize=True)``.
    A custom ``select`` in kw is used as given (larger = better for the attacker); by default it is the
    (negated when minimizing) score.
    """
    if not isinstance(minimize, bool):
        raise AttackError(f"minimize must be True or False, got {minimize!r}")
    if not callable(score):
        raise AttackError(f"score must be a callable score(model, x_adv) -> (N,), got {type(score).__name__}")
    if minimize:
        objective = lambda m, z: -score(m, z)  # noqa: E731
        return maximize(model, objective, x, **kw)
    return maximize(model, score, x, **kw)
