"""Generated samples and counterfactuals by targeted L2 PGD toward a class (Figs. 2-3), with their checks (did the
attack reach its target?) and their keyed units (one per classifier, kind and batch of starting images).

Targeted L2 PGD toward a class t (:func:`targeted_pgd`), from the image itself (no random start), in eval mode:

* generative classifier: maximize d_t(x) (only sub-model t runs; examples are grouped by target), as the
  paper's attacks on the generative classifier do (Eq. 11);
* softmax classifier: minimize the cross-entropy toward t (``attacks.pgd_targeted``).

"Large eps": ``gen.eps`` is the L2 radius, default 40 (the paper gives no value). With steps x step size <= eps,
which holds for Tab. 2's configurations (7 or 10 steps of size 1.0), the ball never binds: the step budget, not eps,
limits how far an image moves (at most steps x step size in L2), so any eps >= 10 gives the same images.

Prefix chains: configurations with the same step size whose steps all fit in the ball (max steps x step size <= eps)
are run as one trajectory: the 10-step result continues the 7-step one for 3 more steps. Without projection a PGD
step is x <- clip(x + step_size * g / |g|), independent of the start, so this equals separate runs up to float
rounding (tests/test_generate.py) and saves 7 of 17 steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.attacks import eval_mode, pgd_score, pgd_targeted
from ..core.config import GenConfig
from ..core.fold import folded_copy
from ..core.models import GenerativeClassifier
from ..store.units import UnitStore
from . import fid as gfid
from .generate_starts import KINDS, Generated, starting_images, starts_of

__all__ = ["targeted_pgd", "pgd_runs", "GenUnits", "generation_unit", "batches", "unit_of", "generate"]


def targeted_pgd(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, eps: float, steps: int,
                 step_size: float, batch_size: int | None = None) -> torch.Tensor:
    """L2 PGD toward class ``target`` (N,) in eval mode: a GenerativeClassifier raises d_t (sub-model t only,
    examples grouped by target); any other classifier lowers the cross-entropy toward t. x: (N, 3, 32, 32) in
    [0, 1]; returns x_adv with |x_adv - x|_2 <= eps, in [0, 1]."""
    kw = dict(eps=eps, norm="l2", steps=steps, step_size=step_size, batch_size=batch_size)
    with eval_mode(model):
        if not isinstance(model, GenerativeClassifier):
            return pgd_targeted(model, x, target, **kw)
        out = x.detach().clone()
        for t in torch.unique(target).tolist():
            idx = (target == t).nonzero(as_tuple=True)[0]
            out[idx] = pgd_score(model, lambda m, z, t=t: m.d(z, t), x[idx], **kw)
        return out


def pgd_runs(model: nn.Module, x: torch.Tensor, target: torch.Tensor, configs, *, eps: float,
             batch_size: int | None = None) -> dict[tuple[int, float], torch.Tensor]:
    """targeted_pgd for every (steps, step_size) in configs; configs sharing a step size with
    max steps x step size <= eps run as one prefix chain (see the module docstring)."""
    configs = sorted({(int(s), float(a)) for s, a in configs}, key=lambda c: (c[1], c[0]))
    out = {}
    for step_size in sorted({a for _, a in configs}):
        steps_list = [s for s, a in configs if a == step_size]
        chain = max(steps_list) * step_size <= eps
        cur, done = x, 0
        for steps in steps_list:
            if chain:
                cur = targeted_pgd(model, cur, target, eps=eps, steps=steps - done, step_size=step_size,
                                   batch_size=batch_size)
                done = steps
                out[(steps, step_size)] = cur
            else:
                out[(steps, step_size)] = targeted_pgd(model, x, target, eps=eps, steps=steps, step_size=step_size,
                                                       batch_size=batch_size)
    return out


@torch.no_grad()
def _check_sums(model: nn.Module, x0: torch.Tensor, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> dict:
    """Did the attack reach its target? Per batch of images: how many are classified as t, the sum of p(t | x) and of
    the L2 distance from the start, the largest distance (summed over units, then divided: :func:`_checks_of`)."""
    hit, p_t = [], []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            z = model(x[i:i + batch_size])
            t = target[i:i + batch_size]
            hit.append(z.argmax(1) == t)
            p_t.append(F.softmax(z.float(), 1).gather(1, t.view(-1, 1))[:, 0])
    dist = (x - x0).flatten(1).norm(dim=1)
    return {"n": len(x), "hits": int(torch.cat(hit).sum()), "p_target_sum": float(torch.cat(p_t).double().sum()),
            "l2_sum": float(dist.double().sum()), "max_l2": float(dist.max()) if len(x) else 0.0}


def _checks_of(sums: list[dict]) -> dict:
    """Fraction classified as the target, mean p(target | x), mean and largest L2 distance moved, over units."""
    n = sum(u["n"] for u in sums)
    return {"target_rate": sum(u["hits"] for u in sums) / n, "mean_p_target": sum(u["p_target_sum"] for u in sums) / n,
            "mean_l2": sum(u["l2_sum"] for u in sums) / n, "max_l2": max(u["max_l2"] for u in sums)}


@dataclass(frozen=True)
class GenUnits:
    """Where generation keeps its units (genrobust.store.units): one per classifier, kind and batch of starting
    images, keyed by the classifier's weights digest, the starting images (data, split, seed, sizes), the PGD
    configurations, eps and the batch; each holds the batch's images (uint8, as they go to Inception) and checks."""
    store: UnitStore
    digests: dict          # classifier name -> weights digest
    data: dict             # the data's identity (sha256 or generator record) and split

    def key(self, gen: GenConfig, name: str, kind: str, lo: int, hi: int) -> dict:
        starts = {"seed": gen.seed, "n": gen.n_samples if kind == "samples" else gen.n_counterfactuals or gen.n_samples}
        starts.update({"cov_ridge": gen.cov_ridge} if kind == "samples" else {"cf_target": gen.cf_target})
        return {"unit": "generate", "classifier": self.digests[name], "kind": kind, "data": self.data,
                "starts": starts, "pgd_configs": sorted([int(s), float(a)] for s, a in gen.pgd_configs),
                "eps": gen.eps, "batch_size": gen.batch_size, "lo": lo, "hi": hi}


def _pgd_name(pgd: tuple[int, float]) -> str:
    return f"{pgd[0]}x{pgd[1]:g}"


def generation_unit(model: nn.Module, x0: torch.Tensor, target: torch.Tensor, gen: GenConfig) -> tuple[dict, dict]:
    """One batch of starting images x0 (n, 3, 32, 32) with targets (n,): (images {pgd name: uint8 (n, 3, 32, 32)},
    result {checks per pgd name, seconds})."""
    t0 = time.time()
    runs = pgd_runs(model, x0, target, gen.pgd_configs, eps=gen.eps, batch_size=gen.batch_size)
    images = {_pgd_name(pgd): gfid.quantize(x) for pgd, x in runs.items()}
    checks = {_pgd_name(pgd): _check_sums(model, x0, x, target, gen.batch_size) for pgd, x in runs.items()}
    return images, {"checks": checks, "seconds": round(time.time() - t0, 2)}


def batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]


def unit_of(work: nn.Module, x0: torch.Tensor, target: torch.Tensor, gen: GenConfig, lo: int, hi: int,
            units: GenUnits | None, key: dict | None) -> tuple[dict, dict]:
    """One batch [lo, hi): (images, result) from the store when there, else computed (and stored)."""
    if units is not None:
        images = units.store.tensors(key)
        if images is not None:
            return images, units.store.get(key)
    images, result = generation_unit(work, x0[lo:hi], target[lo:hi], gen)
    if units is not None:
        result = units.store.put(key, result, tensors=images)
    return images, result


def generate(gen: GenConfig, data, classifiers: dict[str, nn.Module], *, device=None,
             progress: bool = True, units: GenUnits | None = None) -> Generated:
    """Seeds, generated samples and counterfactuals of every classifier for every PGD configuration of ``gen``.
    ``data``: a genrobust.data.Prepared (seeds are fitted on data.train_x, counterfactuals start from data.test_x).
    The attacks run on ``device`` (default: CUDA if available, else CPU; the classifiers are moved there), one batch
    of gen.batch_size starting images at a time; with ``units`` each batch is a unit, read from the store when
    there, else computed and stored (a killed run resumes). The returned images (CPU, float in [0, 1]) are the
    quantized ones (uint8 / 255: what Inception sees and a saved PNG holds)."""
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = starting_images(gen, data)
    jobs = [(name, kind) for name in classifiers for kind in KINDS]
    works = {}  # one frozen, BN-folded copy per classifier (genrobust.core.fold): what the attacks run on
    pgds = sorted({(int(st), float(a)) for st, a in gen.pgd_configs}, key=lambda c: (c[1], c[0]))
    for name, kind in tqdm(jobs, disable=not progress, desc="targeted PGD", leave=False):
        x0, target = starts_of(out, kind, device)
        parts, sums, seconds = {p: [] for p in pgds}, {p: [] for p in pgds}, 0.0
        for lo, hi in batches(len(x0), gen.batch_size):  # one unit per batch of starting images
            if name not in works:
                works[name] = folded_copy(classifiers[name].to(device))
            key = units.key(gen, name, kind, lo, hi) if units is not None else None
            images, result = unit_of(works[name], x0, target, gen, lo, hi, units, key)
            seconds += result["seconds"]
            for p in pgds:
                parts[p].append(images[_pgd_name(p)])
                sums[p].append(result["checks"][_pgd_name(p)])
        out.seconds[f"pgd {name} {kind}"] = round(seconds, 1)
        for p in pgds:
            out.images[(kind, name, p)] = torch.cat(parts[p]).float().div_(255.0)
            out.checks.append({"kind": kind, "classifier": name, "steps": p[0], "step_size": p[1],
                               **_checks_of(sums[p])})
    return out
