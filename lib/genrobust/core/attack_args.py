"""The attacks' arguments, checked once: one-line AttackErrors, the validated PGD settings with their defaults, the
common start of every attack.

The attacks' arguments, checked once: one-line AttackErrors naming the parameter, the validated PGD settings
(eps, norm, steps, step size, restarts, generator, chunking) with their defaults, and the common start of every
attack (:func:`begin_attack`).

What each keyword means is in :mod:`genrobust.core.attacks` (the attacks' public surface). ``check_values`` picks
whether x's range and the labels' range are read on the host (one sync per call on CUDA); shapes, dtypes and devices
are checked either way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["NORMS", "AttackError", "PGDSettings", "PGD_DEFAULTS", "default_step_size", "pgd_kwargs",
           "begin_attack", "check_norm", "check_eps", "check_int", "check_flag", "check_x", "check_labels",
           "check_grad_mode"]

NORMS = ("l2", "linf")


class AttackError(ValueError):
    """Bad attack argument (the message names the parameter and the allowed values)."""


# ----------------------------------------------------------------------------------------------------------------
# Argument checks (one-line errors naming the parameter).
def check_norm(norm) -> str:
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


def check_eps(eps) -> float:
    return _check_number("eps", eps, positive=False)


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttackError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_step_size(step_size) -> float:
    return _check_number("step_size", step_size, positive=True, hint=" (or None for the default)")


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise AttackError(f"{name} must be True or False, got {value!r}")
    return value


def check_x(x, values: bool = True) -> torch.Tensor:
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


def check_labels(name: str, y, x: torch.Tensor, num_classes: Optional[int], values: bool = True) -> torch.Tensor:
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


# ----------------------------------------------------------------------------------------------------------------
# The validated settings, their defaults, and the common start of the label-driven attacks.
@dataclass(frozen=True)
class PGDSettings:
    """Validated PGD settings shared by all attacks; build them with :meth:`checked` (the one place the common
    keyword arguments are validated and step_size's default is filled)."""
    eps: float
    norm: str
    steps: int
    step_size: float
    random_start: bool
    restarts: int
    generator: torch.Generator
    batch_size: Optional[int]
    check_values: bool  # x in [0, 1], labels in [0, K): checked (a host read each) or vouched for by the caller

    @classmethod
    def checked(cls, x: torch.Tensor, kw: dict) -> "PGDSettings":
        """The common keyword arguments ``kw`` (module docstring of genrobust.core.attacks; defaults filled and
        unknown names refused by :func:`pgd_kwargs`), each checked, with step_size's default. ``x`` (checked by the
        caller): the default generator is made on its device."""
        kw = pgd_kwargs(kw)
        eps, norm = check_eps(kw["eps"]), check_norm(kw["norm"])
        random_start = check_flag("random_start", kw["random_start"])
        check_values = check_flag("check_values", kw["check_values"])
        restarts = check_int("restarts", kw["restarts"], 1)
        if restarts > 1 and not random_start:
            raise AttackError(f"restarts > 1 requires random_start=True (restarts from delta=0 are identical), "
                              f"got restarts={restarts}")
        batch_size = None if kw["batch_size"] is None else check_int("batch_size", kw["batch_size"], 1)
        generator = _check_generator(kw["generator"], x)
        steps, step_size = kw["steps"], kw["step_size"]
        if eps == 0:
            # Nothing to optimize: x is returned unchanged, so steps / step_size are not needed (steps=0 is allowed).
            check_int("steps", steps, 0)
            if step_size is not None:
                _check_step_size(step_size)
            return cls(0.0, norm, steps, 1.0, random_start, restarts, generator, batch_size, check_values)
        steps = check_int("steps", steps, 1)
        step_size = default_step_size(eps, steps) if step_size is None else _check_step_size(step_size)
        return cls(eps, norm, steps, step_size, random_start, restarts, generator, batch_size, check_values)


def check_grad_mode():
    if torch.is_inference_mode_enabled():
        raise AttackError("attacks need autograd: call them outside torch.inference_mode() "
                          "(torch.no_grad() is fine)")


def default_step_size(eps: float, steps: int) -> float:
    """2.5 * eps / steps (Madry et al.): lets PGD travel from the centre to the boundary and move along it."""
    eps = check_eps(eps)
    steps = check_int("steps", steps, 1)
    return 2.5 * eps / steps


PGD_DEFAULTS = dict(norm="l2", steps=10, step_size=None, random_start=False, restarts=1, generator=None,
                     batch_size=None, check_values=True)


def pgd_kwargs(kw: dict) -> dict:
    """Fill defaults of the common keyword arguments; unknown names are an error (typos must not pass silently)."""
    unknown = sorted(set(kw) - set(PGD_DEFAULTS) - {"eps"})
    if unknown:
        raise AttackError(f"unknown attack argument(s) {unknown}; allowed: {['eps'] + sorted(PGD_DEFAULTS)}")
    if "eps" not in kw:
        raise AttackError("eps is required (the perturbation budget, >= 0)")
    return {**PGD_DEFAULTS, **kw}


def begin_attack(x, kw, labels, K):
    """Common start of every attack: check the grad mode, x, the PGD keywords and each (name, labels) pair against
    K (None: unknown yet; no pairs for :func:`~genrobust.core.attack_engine.maximize`). Returns (x ready to attack,
    settings), or (a clone of x, None) when there is nothing to attack (eps = 0 or no examples)."""
    check_grad_mode()
    kw = pgd_kwargs(kw)
    x = check_x(x, values=check_flag("check_values", kw["check_values"]))
    cfg = PGDSettings.checked(x, kw)
    for name, lab in labels:
        check_labels(name, lab, x, K, values=cfg.check_values)
    if cfg.eps == 0 or x.shape[0] == 0:
        return x.clone(), None
    return (x.detach().clone() if x.is_inference() else x.detach()), cfg
