"""PGD's per-norm pieces (as in MadryLab's robustness): the random start in the eps-ball, the projection onto it and
one steepest-ascent step, for L2 and Linf.

delta, grad: (N, ...) with one example per row; eps and step_size in [0, 1] pixel units. The PGD loop that uses
them is :mod:`genrobust.core.attack_engine`'s.
"""
from __future__ import annotations

import torch

from .attack_args import AttackError, check_eps, check_norm

__all__ = ["per_example", "random_start", "project", "ascent_step"]


# ----------------------------------------------------------------------------------------------------------------
# Per-norm pieces. delta, grad: (N, ...) with one example per row; eps, step_size in [0, 1] pixel units.
def per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
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
    norm, eps = check_norm(norm), check_eps(eps)
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
    g = g / per_example(_l2_norms(g).clamp_min(1e-12), g)
    return (g * per_example(radius, g)).to(x.device, non_blocking=True)


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Euclidean projection of each example's delta onto {||delta||_p <= eps}."""
    norm, eps = check_norm(norm), check_eps(eps)
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _l2_norms(delta)
    # Scale down only the rows outside the ball; the clamp_min guards delta == 0 (factor 1, delta stays 0).
    factor = (eps / n.clamp_min(1e-12)).clamp(max=1.0)
    return delta * per_example(factor, delta)


def ascent_step(delta: torch.Tensor, grad: torch.Tensor, norm: str, step_size: float) -> torch.Tensor:
    """One steepest-ascent step of size ``step_size`` in the given norm.

    l2: delta + step_size * grad / ||grad||_2 per example (a zero gradient gives a zero step, not NaN);
    linf: delta + step_size * sign(grad).
    """
    norm = check_norm(norm)
    if norm == "linf":
        return delta + step_size * grad.sign()
    unit = grad / per_example(_l2_norms(grad).clamp_min(1e-12), grad)
    return delta + step_size * unit
