"""Multi-targeted PGD (AutoAttack's MT idea): for every target t != y raise the margin z_t - z_y, then keep per
example the candidate with the largest untargeted margin; on a generative classifier each step runs only d_t and d_y.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attack_args import AttackError, begin_attack, check_labels
from .attack_engine import attack_context, chunks, improves, maximize_chunk
from .attack_pgd import checked_logits, known_num_classes, margin
from .attack_steps import per_example
from .models import class_logits

__all__ = ["multi_targeted"]


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
    K = known_num_classes(model)
    x, cfg = begin_attack(x, kw, [("y", y)], K)
    if cfg is None:
        return x
    out = []
    with attack_context(model, x):
        if K is None:
            with torch.no_grad():
                K = checked_logits(model, x[:2] if x.shape[0] >= 2 else x, []).shape[1]
            check_labels("y", y, x, K, values=cfg.check_values)
        if K < 2:
            raise AttackError(f"model must have K >= 2 classes for multi_targeted, got K={K}")
        for sl in chunks(x.shape[0], cfg.batch_size):
            xc, yc = x[sl], y[sl]
            best_x, best_v = xc.clone(), None

            def untargeted_margin(m, z, yc=yc):
                return margin(m(z), yc)

            for j in range(1, K):
                t = (yc + j) % K

                def targeted_margin(m, z, t=t, yc=yc):  # (n,); for a GenerativeClassifier only d_t and d_y run
                    return class_logits(m, z, t) - class_logits(m, z, yc)

                cand, v = maximize_chunk(model, targeted_margin, untargeted_margin, xc, cfg, need_value=True)
                if best_v is None:
                    best_x, best_v = cand, v
                else:
                    better = improves(v, best_v)
                    best_x = torch.where(per_example(better, cand), cand, best_x)
                    best_v = torch.where(better, v, best_v)
            out.append(best_x)
    return torch.cat(out)
