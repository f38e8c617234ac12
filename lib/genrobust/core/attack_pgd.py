"""PGD on a classifier's (N, K) logits: untargeted (Eq. 10, Madry et al.: maximize the cross-entropy) and targeted
(minimize the cross-entropy toward a class), with the margin that picks the best restart.

The logit helpers here (:func:`margin`, :func:`checked_logits`, :func:`known_num_classes`) are shared with
:mod:`genrobust.core.attack_multi_targeted`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attack_args import AttackError, begin_attack
from .attack_engine import attack_context, chunks, maximize_chunk
from .models import GenerativeClassifier

__all__ = ["margin", "checked_logits", "known_num_classes", "pgd_untargeted", "pgd_targeted"]


# ----------------------------------------------------------------------------------------------------------------
# Logit-based objectives. z: (N, K) logits; y, t: (N,) int64.
def margin(z: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """max_{j != cls} z_j - z_cls: (N,). Positive <=> the example is not classified as cls."""
    z_cls = z.gather(1, cls.view(-1, 1))[:, 0]
    others = z.scatter(1, cls.view(-1, 1), float("-inf"))
    return others.max(dim=1).values - z_cls


def checked_logits(model: nn.Module, z_in: torch.Tensor, labels: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """model(z_in): (N, K), checking the output shape and that every label tensor indexes a class < K."""
    z = model(z_in)
    if z.dim() != 2 or z.shape[0] != z_in.shape[0]:
        raise AttackError(f"model must return (N, K) logits, got shape {tuple(z.shape)}")
    for name, lab in labels:
        if lab.numel() and lab.max().item() >= z.shape[1]:
            raise AttackError(f"{name} must hold class indices in [0, {z.shape[1]}), got max {lab.max().item()}")
    return z


def known_num_classes(model: nn.Module) -> Optional[int]:
    if isinstance(model, GenerativeClassifier):
        return model.num_classes
    k = getattr(model, "num_classes", None)
    return k if isinstance(k, int) and not isinstance(k, bool) else None


def _logit_attack(model, x, labels, make_score, make_select, kw) -> torch.Tensor:
    """Shared driver of pgd_untargeted / pgd_targeted: validate, chunk, and run :func:`maximize_chunk` per chunk with
    score/select closures ``make_score(labels, checked)`` bound to the chunk's labels. The first forward checks
    the labels ``checked`` (all of them, or none with check_values=False) against the model's K."""
    x, cfg = begin_attack(x, kw, labels, known_num_classes(model))
    if cfg is None:
        return x
    out = []
    with attack_context(model, x):
        for sl in chunks(x.shape[0], cfg.batch_size):
            labs = [(name, lab[sl]) for name, lab in labels]
            checked = labs if cfg.check_values else []
            score, select = make_score(labs, checked), make_select(labs, checked)
            out.append(maximize_chunk(model, score, select, x[sl], cfg, need_value=False)[0])
    return torch.cat(out)


def pgd_untargeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> torch.Tensor:
    """Eq. 10: maximize cross-entropy(model(x_adv), y) within the eps-ball (Madry et al. PGD).

    model(x) -> (N, K) logits (a GenerativeClassifier runs all K sub-models each step). With restarts, the
    per-example winner is the candidate with the largest margin max_{j != y} z_j - z_y (positive = misclassified),
    not the largest CE. kw: the common attack arguments (see the module docstring).
    """
    def make_score(labs, checked):
        (_, y_), first = labs[0], [True]

        def score(m, z_in):
            z = checked_logits(m, z_in, checked) if first[0] else m(z_in)
            first[0] = False
            return F.cross_entropy(z, y_, reduction="none")
        return score

    def make_select(labs, checked):
        return lambda m, z_in: margin(checked_logits(m, z_in, checked), labs[0][1])

    return _logit_attack(model, x, [("y", y)], make_score, make_select, kw)


def pgd_targeted(model: nn.Module, x: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """Targeted PGD: minimize cross-entropy toward ``target`` (N,) int64, i.e. maximize -CE.

    Restarts keep per example the candidate with the largest z_t - max_{j != t} z_j (positive = classified as t).
    """
    def make_score(labs, checked):
        (_, t_), first = labs[0], [True]

        def score(m, z_in):
            z = checked_logits(m, z_in, checked) if first[0] else m(z_in)
            first[0] = False
            return -F.cross_entropy(z, t_, reduction="none")
        return score

    def make_select(labs, checked):
        return lambda m, z_in: -margin(checked_logits(m, z_in, checked), labs[0][1])

    return _logit_attack(model, x, [("target", target)], make_score, make_select, kw)
