"""Training objectives: Eq. 3 (out-distribution AT), Eq. 9 (combined in/out AT), and Madry's softmax PGD-AT.

Each objective is a small function ``(model, batch, cfg, generator) -> (loss, stats)``; the one training loop in
``genrobust.training`` calls them. The paper writes the objectives as log-likelihoods to *maximize*; here they are
the equivalent binary cross-entropy losses to *minimize* on the logit d_k (D_k = sigmoid(d_k)).

BatchNorm during the inner attack: the attack runs with the model in **eval mode** (BN uses its running
statistics, as in TRADES and most PGD-AT code since), so (1) crafting the perturbation never updates BN statistics,
(2) each example's perturbation does not depend on the rest of its batch, and (3) the attack targets the function
that will be evaluated. The update step then runs in train mode on the clean positives and perturbed negatives
together, so BN sees one balanced batch. In eval mode a BN is an affine map, so the attack runs on
:func:`genrobust.core.fold.fold_for_attack` of the model: BN folded into the convolutions from the live weights and
running statistics of this step (the same function up to float rounding; tests/test_fold.py checks the
perturbations, losses and updated weights of training steps against the unfolded attack).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .attacks import eval_mode, pgd_score, pgd_untargeted
from .fold import fold_for_attack


def d_score(model, x):
    """d_k(x): (N,) the single output of a binary model."""
    return model(x)[:, 0]


def _perturb(model, x, eps: float, minimize: bool, cfg, generator):
    """L2 PGD on d_k within B(x, eps) with the training attack's settings (cfg.attack_*), on the model's eval-mode
    function with BN folded (see the module docstring)."""
    if eps == 0:
        return x
    with eval_mode(model):  # the live model's mode too (the folded view is always in eval mode)
        return pgd_score(fold_for_attack(model), d_score, x, minimize=minimize, eps=eps, norm="l2",
                         steps=cfg.attack_steps, step_size=cfg.attack_step_size,
                         random_start=cfg.attack_random_start, generator=generator)


def perturb_negatives(model, x_neg, cfg, generator):
    """Eq. 3 inner problem: x' in B(x, eps) maximizing d_k(x') (the min over log(1 - D_k))."""
    return _perturb(model, x_neg, cfg.eps, False, cfg, generator)


def perturb_positives(model, x_pos, cfg, generator):
    """Eq. 9 in-distribution inner problem: x' in B(x, eps1) minimizing d_k(x') (the min over log D_k)."""
    return _perturb(model, x_pos, cfg.eps1, True, cfg, generator)


def _bce_on(model, x_pos, x_neg):
    """BCE of d_k on [positives -> 1, negatives -> 0] in one forward pass (one balanced BN batch)."""
    logits = d_score(model, torch.cat([x_pos, x_neg]))
    target = torch.cat([logits.new_ones(len(x_pos)), logits.new_zeros(len(x_neg))])
    loss = F.binary_cross_entropy_with_logits(logits, target)
    with torch.no_grad():
        acc = ((logits > 0).float() == target).float().mean()
    return loss, {"loss": loss.detach(), "acc": acc}


def out_distribution_loss(model, x_pos, x_neg, cfg, generator):
    """Eq. 3: clean positives of class k, negatives (other classes) perturbed to maximize d_k within eps."""
    return _bce_on(model, x_pos, perturb_negatives(model, x_neg, cfg, generator))


def combined_loss(model, x_pos, x_neg, cfg, generator):
    """Eq. 9: positives perturbed to minimize d_k within eps1, negatives perturbed to maximize d_k within eps."""
    return _bce_on(model, perturb_positives(model, x_pos, cfg, generator),
                   perturb_negatives(model, x_neg, cfg, generator))


BINARY_OBJECTIVES = {"out": out_distribution_loss, "combined": combined_loss}


def softmax_pgd_at_loss(model, x, y, cfg, generator):
    """Madry et al. PGD-AT: cross-entropy on untargeted L2 PGD examples within cfg.eps (Eq. 10 as the inner max)."""
    if cfg.eps > 0:
        with eval_mode(model):
            x = pgd_untargeted(fold_for_attack(model), x, y, eps=cfg.eps, norm="l2", steps=cfg.attack_steps,
                               step_size=cfg.attack_step_size, random_start=False, generator=generator)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    with torch.no_grad():
        acc = (logits.argmax(1) == y).float().mean()
    return loss, {"loss": loss.detach(), "acc": acc}
