"""White-box PGD attacks on [0, 1] images, including the paper's adaptive attack on the generative classifier.

Every attack is a pure function: it takes clean images x (N, 3, H, W) float in [0, 1] and returns adversarial
images x_adv of the same shape, with ||x_adv - x||_p <= eps per example and x_adv in [0, 1]. Distances are in
image space (the models normalize internally), so eps = 0.5 (L2) means 0.5 in [0, 1] pixel units.

Attacks (Sec. 3.2 of "Generative Robust Classification", Yin):

* :func:`pgd_untargeted` -- Eq. 10: maximize the cross-entropy of the (N, K) logits (Madry et al. PGD).
* :func:`eq11_12_attack` -- Eq. 11-12, the adaptive attack on a :class:`GenerativeClassifier`: for every k != y
  maximize d_k(x + delta) alone, then keep the delta_k with the largest d_k(x + delta_k) + c_k.
* :func:`multi_targeted` -- for every target t != y maximize the margin z_t - z_y (AutoAttack's MT idea); on a
  generative classifier each step runs only sub-models t and y.
* :func:`pgd_targeted`, :func:`pgd_score` and the engine :func:`maximize` for custom objectives.

Guarantees of every attack function here (all tested in tests/test_attacks.py):

* the model's train/eval flags are not changed (attacks do NOT switch modes; wrap the call in :func:`eval_mode`
  to attack the model in eval mode -- that is what you want for evaluation);
* buffers (BatchNorm running stats, num_batches_tracked) are restored on exit (:func:`frozen_state`), so an attack
  on a train-mode model does not change its BN statistics (its forward passes still use batch statistics);
* parameters' ``.grad`` are never touched and weight gradients are never computed (``torch.autograd.grad`` w.r.t.
  the input only);
* the global torch RNG is not used: randomness comes from the ``generator`` argument only (and the global CPU/CUDA
  RNG state is restored on exit, so even a model with train-mode dropout leaves it unchanged);
* deterministic for a given generator seed; works under ``torch.no_grad()`` (grad is re-enabled inside) but
  refuses to run under ``torch.inference_mode()`` (autograd is impossible there).

Common keyword arguments of all attacks:

``eps`` (>= 0, required), ``norm`` ("l2" or "linf"), ``steps`` (>= 1; any value, even 0, is accepted when eps == 0
because then x is returned unchanged), ``step_size`` (> 0; default :func:`default_step_size`), ``random_start``
(bool), ``restarts`` (>= 1; > 1 needs random_start=True, otherwise every restart would be identical),
``generator`` (a ``torch.Generator``; default: a fresh generator seeded with 0 on x's device, so results are
reproducible without touching the global RNG), ``batch_size`` (None = all at once; else attack in chunks of at
most this many examples -- note that a train-mode BN model sees chunk statistics), ``check_values`` (default True:
x must lie in [0, 1] and labels in [0, K), a one-line error otherwise; False skips these two checks, the only ones
that read tensor values on the host -- on CUDA a device sync per call -- for callers whose inputs hold them by
construction: the training step, whose images are uint8 / 255 and whose labels were checked when loaded; shapes,
dtypes and devices are checked either way).

Restarts and selection: each restart runs ``steps`` PGD steps and the *final* iterate is its candidate (no
best-iterate tracking); per example, the candidate with the largest ``select`` value over restarts (and, for
eq11_12_attack / multi_targeted, over classes / targets) is returned.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import GenerativeClassifier, class_logits

__all__ = [
    "AttackError", "NORMS", "default_step_size", "random_start", "project", "ascent_step", "eval_mode",
    "frozen_state", "maximize", "pgd_score", "pgd_untargeted", "pgd_targeted", "eq11_12_attack", "multi_targeted",
]

NORMS = ("l2", "linf")

# score(model, x_adv) -> (N,) objective to maximize; select(model, x_adv) -> (N,) "larger = better for the attacker".
ScoreFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class AttackError(ValueError):
    """Bad attack argument (the message names the parameter and the allowed values)."""


# ----------------------------------------------------------------------------------------------------------------
# Argument checks (one-line errors naming the parameter).
def _check_norm(norm) -> str:
    if norm not in NORMS:
        raise AttackError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def _check_number(name: str, value, *, positive: bool, hint: str = "") -> float:
    """A finite float, > 0 (positive) or >= 0; else a one-line AttackError naming the parameter."""
    want = f"{name} must be a finite number {'> 0' if positive else '>= 0'}{hint}, got {value!r}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AttackError(want) from None
    if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
        raise AttackError(want)
    return v


def _check_eps(eps) -> float:
    return _check_number("eps", eps, positive=False)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttackError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_step_size(step_size) -> float:
    return _check_number("step_size", step_size, positive=True, hint=" (or None for the default)")


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise AttackError(f"{name} must be True or False, got {value!r}")
    return value


def _check_x(x, values: bool = True) -> torch.Tensor:
    """x's type and shape; with ``values``, also its range (a host read of x's min and max)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise AttackError(f"x must be a float tensor of images in [0, 1], got "
                          f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise AttackError(f"x must have shape (N, 3, H, W), got {tuple(x.shape)}")
    # `not (a and b)` also catches NaN (every comparison with NaN is False).
    if values and x.numel() and not (x.min().item() >= 0.0 and x.max().item() <= 1.0):
        raise AttackError(f"x must lie in [0, 1] (got min {x.min().item():.4g}, max {x.max().item():.4g})")
    return x


def _check_labels(name: str, y, x: torch.Tensor, num_classes: Optional[int], values: bool = True) -> torch.Tensor:
    """y's dtype, shape and device; with ``values``, also its range (a host read of y's min and max)."""
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise AttackError(f"{name} must be an int64 tensor of class indices, got "
                          f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
    if y.shape != (x.shape[0],):
        raise AttackError(f"{name} must have shape (N,) = ({x.shape[0]},), got {tuple(y.shape)}")
    if y.device != x.device:
        raise AttackError(f"{name} must be on x's device {x.device}, got {y.device}")
    if values and y.numel():
        lo, hi = y.min().item(), y.max().item()
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            k = "K" if num_classes is None else num_classes
            raise AttackError(f"{name} must hold class indices in [0, {k}), got values in [{lo}, {hi}]")
    return y


def _check_generator(generator, x: torch.Tensor) -> torch.Generator:
    if generator is None:
        # Reproducible default that never touches the global RNG.
        return torch.Generator(device=x.device).manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise AttackError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


@dataclass(frozen=True)
class _PGD:
    """Validated PGD settings shared by all attacks."""
    eps: float
    norm: str
    steps: int
    step_size: float
    random_start: bool
    restarts: int
    generator: torch.Generator
    batch_size: Optional[int]
    check_values: bool  # x in [0, 1], labels in [0, K): checked (a host read each) or vouched for by the caller


def _settings(x, *, eps, norm, steps, step_size, random_start, restarts, generator, batch_size,
              check_values=True) -> _PGD:
    eps = _check_eps(eps)
    norm = _check_norm(norm)
    random_start = _check_flag("random_start", random_start)
    check_values = _check_flag("check_values", check_values)
    restarts = _check_int("restarts", restarts, 1)
    if restarts > 1 and not random_start:
        raise AttackError(f"restarts > 1 requires random_start=True (restarts from delta=0 are identical), "
                          f"got restarts={restarts}")
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size, 1)
    generator = _check_generator(generator, x)
    if eps == 0:
        # Nothing to optimize: x is returned unchanged, so steps / step_size are not needed (steps=0 is allowed).
        _check_int("steps", steps, 0)
        if step_size is not None:
            _check_step_size(step_size)
        return _PGD(0.0, norm, steps, 1.0, random_start, restarts, generator, batch_size, check_values)
    steps = _check_int("steps", steps, 1)
    step_size = default_step_size(eps, steps) if step_size is None else _check_step_size(step_size)
    return _PGD(eps, norm, steps, step_size, random_start, restarts, generator, batch_size, check_values)


def _check_grad_mode():
    if torch.is_inference_mode_enabled():
        raise AttackError("attacks need autograd: call them outside torch.inference_mode() "
                          "(torch.no_grad() is fine)")


# ----------------------------------------------------------------------------------------------------------------
# Per-norm pieces. delta, grad: (N, ...) with one example per row; eps, step_size in [0, 1] pixel units.
def default_step_size(eps: float, steps: int) -> float:
    """2.5 * eps / steps (Madry et al.): lets PGD travel from the centre to the boundary and move along it."""
    eps = _check_eps(eps)
    steps = _check_int("steps", steps, 1)
    return 2.5 * eps / steps


def _per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1, ...) to broadcast a per-example scalar over like's trailing dims."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1)  # (N,)


def random_start(x: torch.Tensor, norm: str, eps: float, generator: torch.Generator) -> torch.Tensor:
    """A random delta uniform in the eps-ball, drawn from ``generator`` only (never the global RNG).

    linf: each coordinate uniform in [-eps, eps]. l2: a Gaussian direction times radius eps * u^(1/d), u ~ U(0, 1),
    d = numel per example -- exactly uniform in the ball (for d = 3072 the radius is ~eps). The samples are drawn on
    the generator's device and moved to x's device, so a CPU generator works for CUDA inputs (non_blocking: a
    pageable host-to-device copy is staged before the call returns, and a blocking one would wait for the device).
    delta is not clipped to keep x + delta in [0, 1]; :func:`maximize` clamps.
    """
    norm, eps = _check_norm(norm), _check_eps(eps)
    if not isinstance(generator, torch.Generator):
        raise AttackError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    gdev = generator.device
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=gdev, dtype=x.dtype)
        return ((2 * u - 1) * eps).to(x.device, non_blocking=True)
    g = torch.randn(x.shape, generator=generator, device=gdev, dtype=x.dtype)
    d = g[0].numel() if x.shape[0] else 1
    u = torch.rand(x.shape[0], generator=generator, device=gdev, dtype=x.dtype)
    radius = eps * u.pow(1.0 / d)  # (N,)
    g = g / _per_example(_l2_norms(g).clamp_min(1e-12), g)
    return (g * _per_example(radius, g)).to(x.device, non_blocking=True)


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Euclidean projection of each example's delta onto {||delta||_p <= eps}."""
    norm, eps = _check_norm(norm), _check_eps(eps)
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _l2_norms(delta)
    # Scale down only the rows outside the ball; the clamp_min guards delta == 0 (factor 1, delta stays 0).
    factor = (eps / n.clamp_min(1e-12)).clamp(max=1.0)
    return delta * _per_example(factor, delta)


def ascent_step(delta: torch.Tensor, grad: torch.Tensor, norm: str, step_size: float) -> torch.Tensor:
    """One steepest-ascent step of size ``step_size`` in the given norm.

    l2: delta + step_size * grad / ||grad||_2 per example (a zero gradient gives a zero step, not NaN);
    linf: delta + step_size * sign(grad).
    """
    norm = _check_norm(norm)
    if norm == "linf":
        return delta + step_size * grad.sign()
    unit = grad / _per_example(_l2_norms(grad).clamp_min(1e-12), grad)
    return delta + step_size * unit


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
def _attack_context(model: nn.Module, x: torch.Tensor):
    """What every public attack runs inside: autograd on (even under no_grad), buffers frozen, global RNG state
    restored (model-internal randomness such as train-mode dropout may draw from it; the attack itself never does)."""
    _check_grad_mode()
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad(), frozen_state(model):
        yield


def _chunks(n: int, batch_size: Optional[int]) -> list[slice]:
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


def _improves(v: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """(N,) bool: v strictly better than best (ties keep the earlier candidate; a number beats a NaN, not vice versa)."""
    return (v > best) | (torch.isnan(best) & ~torch.isnan(v))


def _maximize(model, score: ScoreFn, select: ScoreFn, x: torch.Tensor, cfg: _PGD, need_value: bool):
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
            better = _improves(v, best_v)
            best_x = torch.where(_per_example(better, x_adv), x_adv, best_x)
            best_v = torch.where(better, v, best_v)
    return best_x, best_v


def maximize(model: nn.Module, score: ScoreFn, x: torch.Tensor, *, eps: float, norm: str = "l2", steps: int = 10,
             step_size: Optional[float] = None, random_start: bool = False, restarts: int = 1,
             generator: Optional[torch.Generator] = None, select: Optional[ScoreFn] = None,
             batch_size: Optional[int] = None, check_values: bool = True) -> torch.Tensor:
    """PGD ascent of a per-example objective within the eps-ball; returns x_adv (N, 3, H, W) in [0, 1].

    score(model, x_adv) -> (N,) is maximized (gradient of its sum w.r.t. the input only); select(model, x_adv) ->
    (N,) picks, per example, the best restart (default: score; larger = better for the attacker). The model's mode
    is used as is (wrap in :func:`eval_mode` to attack in eval mode). eps == 0 returns x.clone().
    check_values=False: x is known to lie in [0, 1] (module docstring); no host read of x.
    """
    _check_grad_mode()
    x = _check_x(x, values=_check_flag("check_values", check_values))
    cfg = _settings(x, eps=eps, norm=norm, steps=steps, step_size=step_size, random_start=random_start,
                    restarts=restarts, generator=generator, batch_size=batch_size, check_values=check_values)
    if not callable(score):
        raise AttackError(f"score must be a callable score(model, x_adv) -> (N,), got {type(score).__name__}")
    if select is not None and not callable(select):
        raise AttackError(f"select must be None or a callable select(model, x_adv) -> (N,), got {type(select).__name__}")
    if cfg.eps == 0 or x.shape[0] == 0:
        return x.clone()
    select = score if select is None else select
    x = x.detach()
    if x.is_inference():  # an inference tensor cannot take part in autograd; a clone outside inference_mode can
        x = x.clone()
    out = []
    with _attack_context(model, x):
        for sl in _chunks(x.shape[0], cfg.batch_size):
            out.append(_maximize(model, score, select, x[sl], cfg, need_value=False)[0])
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


# ----------------------------------------------------------------------------------------------------------------
# Logit-based objectives. z: (N, K) logits; y, t: (N,) int64.
def _margin(z: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """max_{j != cls} z_j - z_cls: (N,). Positive <=> the example is not classified as cls."""
    z_cls = z.gather(1, cls.view(-1, 1))[:, 0]
    others = z.scatter(1, cls.view(-1, 1), float("-inf"))
    return others.max(dim=1).values - z_cls


def _checked_logits(model: nn.Module, z_in: torch.Tensor, labels: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """model(z_in): (N, K), checking the output shape and that every label tensor indexes a class < K."""
    z = model(z_in)
    if z.dim() != 2 or z.shape[0] != z_in.shape[0]:
        raise AttackError(f"model must return (N, K) logits, got shape {tuple(z.shape)}")
    for name, lab in labels:
        if lab.numel() and lab.max().item() >= z.shape[1]:
            raise AttackError(f"{name} must hold class indices in [0, {z.shape[1]}), got max {lab.max().item()}")
    return z


def _known_num_classes(model: nn.Module) -> Optional[int]:
    if isinstance(model, GenerativeClassifier):
        return model.num_classes
    k = getattr(model, "num_classes", None)
    return k if isinstance(k, int) and not isinstance(k, bool) else None


def _begin(x, kw, labels, K):
    """Common start of the label-driven attacks: check the grad mode, x, the PGD keywords and each (name, labels)
    pair against K (None: unknown yet). Returns (x ready to attack, settings), or (a clone of x, None) when there is
    nothing to attack (eps = 0 or no examples)."""
    _check_grad_mode()
    kw = _pgd_kwargs(kw)
    x = _check_x(x, values=_check_flag("check_values", kw["check_values"]))
    cfg = _settings(x, **kw)
    for name, lab in labels:
        _check_labels(name, lab, x, K, values=cfg.check_values)
    if cfg.eps == 0 or x.shape[0] == 0:
        return x.clone(), None
    return (x.detach().clone() if x.is_inference() else x.detach()), cfg


def _logit_attack(model, x, labels, make_score, make_select, kw) -> torch.Tensor:
    """Shared driver of pgd_untargeted / pgd_targeted: validate, chunk, and run :func:`_maximize` per chunk with
    score/select closures ``make_score(labels, checked)`` bound to the chunk's labels. The first forward checks
    the labels ``checked`` (all of them, or none with check_values=False) against the model's K."""
    x, cfg = _begin(x, kw, labels, _known_num_classes(model))
    if cfg is None:
        return x
    out = []
    with _attack_context(model, x):
        for sl in _chunks(x.shape[0], cfg.batch_size):
            labs = [(name, lab[sl]) for name, lab in labels]
            checked = labs if cfg.check_values else []
            score, select = make_score(labs, checked), make_select(labs, checked)
            out.append(_maximize(model, score, select, x[sl], cfg, need_value=False)[0])
    return torch.cat(out)


_PGD_DEFAULTS = dict(norm="l2", steps=10, step_size=None, random_start=False, restarts=1, generator=None,
                     batch_size=None, check_values=True)


def _pgd_kwargs(kw: dict) -> dict:
    """Fill defaults of the common keyword arguments; unknown names are an error (typos must not pass silently)."""
    unknown = sorted(set(kw) - set(_PGD_DEFAULTS) - {"eps"})
    if unknown:
        raise AttackError(f"unknown attack argument(s) {unknown}; allowed: {['eps'] + sorted(_PGD_DEFAULTS)}")
    if "eps" not in kw:
        raise AttackError("eps is required (the perturbation budget, >= 0)")
    return {**_PGD_DEFAULTS, **kw}


def pgd_untargeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> torch.Tensor:
    """Eq. 10: maximize cross-entropy(model(x_adv), y) within the eps-ball (Madry et al. PGD).

    model(x) -> (N, K) logits (a GenerativeClassifier runs all K sub-models each step). With restarts, the
    per-example winner is the candidate with the largest margin max_{j != y} z_j - z_y (positive = misclassified),
    not the largest CE. kw: the common attack arguments (see the module docstring).
    """
    def make_score(labs, checked):
        (_, y_), first = labs[0], [True]

        def score(m, z_in):
            z = _checked_logits(m, z_in, checked) if first[0] else m(z_in)
            first[0] = False
            return F.cross_entropy(z, y_, reduction="none")
        return score

    def make_select(labs, checked):
        return lambda m, z_in: _margin(_checked_logits(m, z_in, checked), labs[0][1])

    return _logit_attack(model, x, [("y", y)], make_score, make_select, kw)


def pgd_targeted(model: nn.Module, x: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """Targeted PGD: minimize cross-entropy toward ``target`` (N,) int64, i.e. maximize -CE.

    Restarts keep per example the candidate with the largest z_t - max_{j != t} z_j (positive = classified as t).
    """
    def make_score(labs, checked):
        (_, t_), first = labs[0], [True]

        def score(m, z_in):
            z = _checked_logits(m, z_in, checked) if first[0] else m(z_in)
            first[0] = False
            return -F.cross_entropy(z, t_, reduction="none")
        return score

    def make_select(labs, checked):
        return lambda m, z_in: -_margin(_checked_logits(m, z_in, checked), labs[0][1])

    return _logit_attack(model, x, [("target", target)], make_score, make_select, kw)


# ----------------------------------------------------------------------------------------------------------------
# Attacks on the generative classifier.
def eq11_12_attack(model: GenerativeClassifier, x: torch.Tensor, y: torch.Tensor, **kw) -> torch.Tensor:
    """The paper's adaptive attack on g(x) = argmax_k d_k(x) + c_k (Sec. 3.2, from [18]).

    Eq. 11: for each k != y, delta_k = argmax_{||delta|| <= eps} d_k(x + delta), by PGD on sub-model k ONLY, with
    all examples whose label is not k batched together (restarts keep the largest d_k). Eq. 12: per example keep
    the delta_k with the largest d_k(x + delta_k) + c_k (with c = 0, as in the paper, exactly Eq. 12). Sub-model k
    never sees an example of class k. Cost: (K - 1) * restarts * steps forward/backward passes of one sub-model per
    example (+ one forward per candidate for Eq. 12).
    """
    if not isinstance(model, GenerativeClassifier):
        raise AttackError(f"model must be a GenerativeClassifier for eq11_12_attack, got {type(model).__name__} "
                          f"(use pgd_untargeted or multi_targeted for softmax models)")
    K = model.num_classes
    x, cfg = _begin(x, kw, [("y", y)], K)
    if cfg is None:
        return x
    out = []
    with _attack_context(model, x):
        for sl in _chunks(x.shape[0], cfg.batch_size):
            xc, yc = x[sl], y[sl]
            best_x = xc.clone()
            best_v = torch.full((xc.shape[0],), float("-inf"), device=x.device)
            for k in range(K):
                idx = (yc != k).nonzero(as_tuple=True)[0]
                if idx.numel() == 0:
                    continue
                c_k = model.c[k].detach().float()

                def d_k(m, z, k=k):  # Eq. 11 objective: sub-model k alone, (n,)
                    return m.d(z, k)

                # The restarts' select (d_k) differs from Eq. 12's value (d_k + c_k) by a constant: same argmax.
                cand, v = _maximize(model, d_k, d_k, xc[idx], cfg, need_value=True)
                v = v + c_k
                cur_v = best_v[idx]
                # The first candidate of an example always replaces the clean x (cur_v = -inf); ties keep the
                # smaller k.
                better = _improves(v, cur_v) | torch.isneginf(cur_v)
                best_v[idx] = torch.where(better, v, cur_v)
                best_x[idx] = torch.where(_per_example(better, cand), cand, best_x[idx])
            out.append(best_x)
    return torch.cat(out)


def multi_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> torch.Tensor:
    """Multi-targeted PGD: for each target t != y, maximize the margin z_t(x') - z_y(x') (one run per offset
    j = 1..K-1 with t = (y + j) mod K, all examples together). Logits come from
    :func:`genrobust.core.models.class_logits`, so on a GenerativeClassifier each step runs only sub-models t and y.

    Selection over targets and restarts: per example the candidate with the largest *untargeted* margin
    max_{j != y} z_j - z_y of the final iterate (one full forward per candidate). Using the untargeted margin
    rather than z_t - z_y means a candidate that lands in a third class is not discarded; any candidate with
    z_t > z_y is misclassified, so the attack is at least as strong as selecting by z_t - z_y. Works for softmax
    models too (K from a clean forward when the model does not expose ``num_classes``).
    """
    K = _known_num_classes(model)
    x, cfg = _begin(x, kw, [("y", y)], K)
    if cfg is None:
        return x
    out = []
    with _attack_context(model, x):
        if K is None:
            with torch.no_grad():
                K = _checked_logits(model, x[:2] if x.shape[0] >= 2 else x, []).shape[1]
            _check_labels("y", y, x, K, values=cfg.check_values)
        if K < 2:
            raise AttackError(f"model must have K >= 2 classes for multi_targeted, got K={K}")
        for sl in _chunks(x.shape[0], cfg.batch_size):
            xc, yc = x[sl], y[sl]
            best_x, best_v = xc.clone(), None

            def untargeted_margin(m, z, yc=yc):
                return _margin(m(z), yc)

            for j in range(1, K):
                t = (yc + j) % K

                def targeted_margin(m, z, t=t, yc=yc):  # (n,); for a GenerativeClassifier only d_t and d_y run
                    return class_logits(m, z, t) - class_logits(m, z, yc)

                cand, v = _maximize(model, targeted_margin, untargeted_margin, xc, cfg, need_value=True)
                if best_v is None:
                    best_x, best_v = cand, v
                else:
                    better = _improves(v, best_v)
                    best_x = torch.where(_per_example(better, cand), cand, best_x)
                    best_v = torch.where(better, v, best_v)
            out.append(best_x)
    return torch.cat(out)
