"""The paper's adaptive attack on the generative classifier (Sec. 3.2, Eq. 11-12): for every k != y raise d_k alone,
then keep the delta_k with the largest d_k + c_k.
"""
from __future__ import annotations

import torch

from .attack_args import AttackError, begin_attack
from .attack_engine import attack_context, chunks, improves, maximize_chunk
from .attack_steps import per_example
from .models import GenerativeClassifier

__all__ = ["eq11_12_attack"]


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
    x, cfg = begin_attack(x, kw, [("y", y)], K)
    if cfg is None:
        return x
    out = []
    with attack_context(model, x):
        for sl in chunks(x.shape[0], cfg.batch_size):
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
                cand, v = maximize_chunk(model, d_k, d_k, xc[idx], cfg, need_value=True)
                v = v + c_k
                cur_v = best_v[idx]
                # The first candidate of an example always replaces the clean x (cur_v = -inf); ties keep the
                # smaller k.
                better = improves(v, cur_v) | torch.isneginf(cur_v)
                best_v[idx] = torch.where(better, v, cur_v)
                best_x[idx] = torch.where(per_example(better, cand), cand, best_x[idx])
            out.append(best_x)
    return torch.cat(out)
