"""Generated samples and counterfactuals of the two classifiers, scored by FID (Section 3.3.2; Tab. 2, Figs. 2-3).

Seeds (following [17], Santurkar et al.): for each class k a multivariate normal N(mu_k, Sigma_k + ridge * I) is
fitted to the class's training images (3072-d, [0, 1] pixel units; mean and full covariance, ridge 1e-4), sampled
from a ``torch.Generator`` seeded with ``gen.seed`` and clipped to [0, 1]. The same seeds go to both classifiers.
Sampling uses the centred images as the covariance's factor (:class:`ClassGaussian`): the same distribution as a
Cholesky factor of the 3072 x 3072 covariance, without forming it.

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

Counterfactuals: a seeded, class-balanced subset of ``gen.n_counterfactuals`` test images (default: as many as samples;
at most the test set), each image x (label y) attacked toward
t = (y + 1 + r) mod K with r uniform in {0, ..., K-2} from a seeded generator: a target uniform over the other
classes, fixed before any classifier is seen, so both classifiers get the same (x, t) pairs. With ``"next"`` the rule
is t = (y + 1) mod K.

FID (:func:`score`): every cell (PGD configuration x classifier x {samples, counterfactuals}) against the same
seeded random subset of the training set (train + validation split), with the same number of images in every cell
of a kind (so the generative and softmax classifiers are always compared at equal N); plus the anchor
FID(test, train) on the counterfactuals' unmodified test images (the counterfactuals' N).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core import paper
from ..core.attacks import eval_mode, pgd_score, pgd_targeted
from ..core.cifar10 import NUM_CLASSES
from ..core.config import GenConfig
from ..core.fold import folded_copy
from ..core.models import GenerativeClassifier
from ..data.batches import to_float
from ..store.units import UnitStore
from . import fid as gfid

__all__ = ["KINDS", "CF_TARGET_RULES", "class_counts", "ClassGaussian", "sample_seeds", "counterfactual_sources",
           "counterfactual_targets", "targeted_pgd", "pgd_runs", "Generated", "generate", "score", "GenUnits",
           "starting_images", "starts_of", "batches", "unit_of", "generation_unit"]

KINDS = ("samples", "counterfactuals")
CF_TARGET_RULES = ("random", "next")


# ---------------------------------------------------------------------------------------------------------------
# Seeds
def class_counts(n: int, num_classes: int = NUM_CLASSES) -> list[int]:
    """n split over the classes as evenly as possible (the first n mod K classes get one more)."""
    return [n // num_classes + (k < n % num_classes) for k in range(num_classes)]


class ClassGaussian:
    """N(mu, Sigma + ridge * I) fitted to images of one class (D = 3072 dims, [0, 1] pixel units), Sigma the
    maximum-likelihood covariance (1/n). Sampled exactly without forming the D x D covariance:
    x = mu + Xc^T z1 / sqrt(n) + sqrt(ridge) z2, z1 ~ N(0, I_n), z2 ~ N(0, I_D), Xc the centred images (n, D),
    whose covariance is Xc^T Xc / n + ridge * I = Sigma + ridge * I. Cost O(m n D) for m samples, against O(n D^2)
    for Sigma and O(D^3) for its Cholesky factor (:meth:`cholesky`, kept for checks)."""

    def __init__(self, x_uint8: torch.Tensor, *, ridge: float = 1e-4):
        if len(x_uint8) < 2:
            raise ValueError(f"ClassGaussian: need >= 2 images of the class, got {len(x_uint8)}")
        x = x_uint8.reshape(len(x_uint8), -1).double().div_(255.0)   # (n, D)
        self.mean = x.mean(0)                                         # (D,)
        self.centred = x - self.mean                                  # (n, D)
        self.ridge = float(ridge)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def covariance(self) -> torch.Tensor:
        """Sigma + ridge * I: (D, D) float64."""
        cov = self.centred.T @ self.centred / len(self.centred)
        cov.diagonal().add_(self.ridge)
        return cov

    def cholesky(self) -> torch.Tensor:
        return torch.linalg.cholesky(self.covariance())

    def sample(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """(m, D) float64 samples (not clipped)."""
        n = len(self.centred)
        z1 = torch.randn(m, n, generator=generator, dtype=torch.float64)
        z2 = torch.randn(m, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + z1 @ self.centred / n ** 0.5 + self.ridge ** 0.5 * z2


def sample_seeds(x_uint8: torch.Tensor, y: torch.Tensor, counts: list[int], *, generator: torch.Generator,
                 ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed images: counts[k] samples of class k's fitted normal (:class:`ClassGaussian`), clipped to [0, 1];
    class-major order. Returns (seeds (N, 3, 32, 32) float32 in [0, 1], labels (N,) int64)."""
    shape = x_uint8.shape[1:]
    xs, ys = [], []
    for k, m in enumerate(counts):
        if m == 0:
            continue
        xs.append(ClassGaussian(x_uint8[y == k], ridge=ridge).sample(m, generator).clamp(0.0, 1.0).float()
                  .reshape(m, *shape))
        ys.append(torch.full((m,), k, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------------------------------------------------------
# Counterfactuals
def counterfactual_sources(y: torch.Tensor, n: int, *, seed: int, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Indices of a seeded class-balanced subset of n examples (class_counts(n)), class-major order."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for k, c in enumerate(class_counts(n, num_classes)):
        idx = torch.nonzero(y == k, as_tuple=True)[0]
        if c > len(idx):
            raise ValueError(f"counterfactuals: {c} test images of class {k} needed, only {len(idx)} available; "
                             f"lower gen.n_counterfactuals")
        out.append(idx[torch.randperm(len(idx), generator=g)[:c]])
    return torch.cat(out)


def counterfactual_targets(y: torch.Tensor, *, rule: str = "random", seed: int = 0,
                           num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Target class t != y per example: 'random': (y + 1 + r) mod K, r ~ U{0..K-2} (seeded); 'next': (y + 1) mod K."""
    if rule not in CF_TARGET_RULES:
        raise ValueError(f"unknown counterfactual target rule {rule!r}; choose one of {list(CF_TARGET_RULES)}")
    if rule == "next":
        return (y + 1) % num_classes
    r = torch.randint(0, num_classes - 1, y.shape, generator=torch.Generator().manual_seed(int(seed)))
    return (y + 1 + r) % num_classes


# ---------------------------------------------------------------------------------------------------------------
# Targeted PGD
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


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Generated:
    """Everything one run of :func:`generate` made. Images: float (N, 3, 32, 32) in [0, 1], class-major.
    ``images[(kind, classifier, (steps, step_size))]``; ``checks``: one dict per cell."""
    seeds: torch.Tensor
    seed_y: torch.Tensor
    originals: torch.Tensor          # uint8 test images (N, 3, 32, 32) whose counterfactuals are made
    original_y: torch.Tensor
    cf_target: torch.Tensor
    images: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    chained: bool = False


def starting_images(gen: GenConfig, data) -> Generated:
    """The seeds (samples start from them) and the counterfactuals' test images and targets of ``gen``, with no
    images generated yet. Deterministic in gen.seed and the data: every job recomputes the same starts."""
    t0 = time.time()
    g = torch.Generator().manual_seed(gen.seed)
    seeds, seed_y = sample_seeds(data.train_x, data.train_y, class_counts(gen.n_samples, NUM_CLASSES), generator=g,
                                 ridge=gen.cov_ridge)
    src = counterfactual_sources(data.test_y, gen.n_counterfactuals or gen.n_samples, seed=gen.seed)
    originals, original_y = data.test_x[src], data.test_y[src]
    cf_target = counterfactual_targets(original_y, rule=gen.cf_target, seed=gen.seed)
    out = Generated(seeds, seed_y, originals, original_y, cf_target, seconds={"seeds": round(time.time() - t0, 1)})
    out.chained = all(s * a <= gen.eps for s, a in gen.pgd_configs)
    return out


def starts_of(generated: Generated, kind: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(starting images float (N, 3, 32, 32) in [0, 1], target classes (N,)) of ``kind`` on ``device``."""
    if kind == "samples":
        return generated.seeds.to(device), generated.seed_y.to(device)
    return to_float(generated.originals, device), generated.cf_target.to(device)


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


SPEED_IMAGES = 25  # images timed through Inception when every feature came from the cache


def score(gen: GenConfig, data, generated: Generated, *, device=None, progress: bool = True) -> dict:
    """FID of every cell and of the anchor FID(test, train) against the same reference statistics; Inception on
    ``device`` (default: CUDA if available, else CPU). Returns {"reference", "inception", "cells", "anchor",
    "seconds"}."""
    t0 = time.time()
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ex = gfid.inception(gen.inception, channels_last=gen.fid_channels_last, fold_bn=gen.fid_fold_bn,
                        batch_size=gen.fid_batch_size, device=device)
    reference = torch.cat([data.train_x, data.val_x])  # the full training set (train + validation split)
    ref = gfid.reference_statistics(ex, reference, n=gen.n_reference, seed=gen.seed, progress=progress,
                                    meta={"data": data.source.get("name"), "sha256": data.source.get("sha256")})
    ref_feats = gfid.reference_features(ex, reference, n=gen.n_reference, seed=gen.seed, cache=gen.cache_features) \
        if gen.kid_subsets else None

    def kid(feats):  # KID beside FID, from the same features against the same reference subset
        return {} if ref_feats is None else gfid.kid(ref_feats, feats, subsets=gen.kid_subsets,
                                                     subset_size=gen.kid_subset_size, seed=gen.seed)
    cells, feats_of = [], {}
    items = list(generated.images.items())
    for (kind, name, pgd), x in tqdm(items, disable=not progress, desc="FID cells", leave=False):
        feats = feats_of[(kind, name, pgd)] = gfid.cached_features(ex, gfid.quantize(x), cache=gen.cache_features)
        cells.append({"kind": kind, "classifier": name, "steps": pgd[0], "step_size": pgd[1],
                      **gfid.fid(ref, feats).to_dict(), **kid(feats)})
    paired = []  # generative - softmax per (kind, PGD): is the difference larger than its sampling spread?
    if gen.n_boot:  # replicates of half-subsamples (fid.paired_subsampling), stored: the verdict's evidence
        for (kind, name, pgd), f in feats_of.items():
            other = feats_of.get((kind, "softmax", pgd))
            if name == "generative" and other is not None:
                paired.append({"kind": kind, "steps": pgd[0], "step_size": pgd[1],
                               **gfid.paired_subsampling(ref, f, other, n_rep=gen.n_boot, seed=gen.seed)})
    test_feats = gfid.cached_features(ex, generated.originals, cache=gen.cache_features)
    anchor = {"what": "FID(test, train)", **gfid.fid(ref, test_feats).to_dict(), **kid(test_feats)}
    n_inception, timed = ex.images, "this run's Inception passes (cache hits not counted)"
    if n_inception < SPEED_IMAGES:  # (nearly) everything came from the cache: time a small batch to show the speed
        ex(generated.originals[:2])     # warm-up (first-call allocations), not timed
        ex.images, ex.seconds = 0, 0.0
        ex(generated.originals[:SPEED_IMAGES])
        timed = f"a {min(SPEED_IMAGES, len(generated.originals))}-image timing pass (features came from the cache)"
    return {
        "reference": {"n": ref.n, "of": ref.meta.get("of"), "seed": gen.seed, "cached": ref.meta.get("cached"),
                      "what": "seeded random subset of the training set (train + validation split)"},
        "inception": {**ex.describe(), "images": ex.images, "seconds": round(ex.seconds, 1),
                      "images_per_s": round(ex.images_per_s, 2), "images_per_s_from": timed},
        "cells": cells,
        "paired": paired,
        "anchor": anchor,
        "seconds": round(time.time() - t0, 1),
    }


FULL_N = 50000  # the common FID protocol's samples per set (the paper states no N: Sec. 3.3.2 says only 'between
#                the training samples and the generated samples')


def comparability(n: int, n_reference: int, full_rank: bool, synthetic: bool) -> str:
    """What an FID at these sizes may be compared to (one short phrase for tables and JSON)."""
    if synthetic:
        return "synthetic data: not comparable to anything"
    if not full_rank:
        return "singular covariance (N <= 2048): compare only at equal N"
    if n < FULL_N or n_reference < FULL_N:
        return f"N = {n:,} / reference {n_reference:,}: biased upward, compare only at equal N"
    return "N = 50,000 against the training set (the common protocol; the paper states no N)"


def tab2_record(gen: GenConfig, generated: Generated, scored: dict, *, synthetic: bool) -> dict:
    """The results record of notebook 04: every Tab. 2 cell with our FID, the paper's, the attack checks and what
    the number may be compared to; the anchor; the Inception network and its measured speed; timings."""
    checks = {(c["kind"], c["classifier"], c["steps"], c["step_size"]): c for c in generated.checks}
    cells = []
    for c in scored["cells"]:
        key = (c["kind"], c["classifier"], c["steps"], c["step_size"])
        ref = paper.TAB2.get((c["steps"], c["step_size"]), {}).get(c["classifier"], {}).get(c["kind"])
        chk = {k: v for k, v in checks[key].items() if k not in ("kind", "classifier", "steps", "step_size")}
        cells.append({**c, "paper": ref, **chk,
                      "comparable": comparability(c["n"], c["n_reference"], c["full_rank"], synthetic)})
    anchor = {**scored["anchor"], "comparable": comparability(scored["anchor"]["n"], scored["anchor"]["n_reference"],
                                                              scored["anchor"]["full_rank"], synthetic)}
    return {
        "notebook": "04_generation_fid",
        "n_samples": gen.n_samples, "n_counterfactuals": gen.n_counterfactuals or gen.n_samples,
        "n_reference": scored["reference"]["n"], "eps": gen.eps,
        "pgd_configs": [list(c) for c in gen.pgd_configs], "cf_target": gen.cf_target, "chained": generated.chained,
        "synthetic": synthetic,
        "cells": cells, "paired": scored.get("paired", []), "anchor": anchor, "reference": scored["reference"],
        "inception": scored["inception"],
        "seconds": {**generated.seconds, "fid": scored["seconds"]},
    }


def figure_panels(generated: Generated, kind: str, pgd: tuple[int, float]) -> dict:
    """Panels for plots.class_grid: the starting images, then each classifier's result, rows by target class.
    kind 'samples' (Fig. 2): seeds of class t; 'counterfactuals' (Fig. 3): test images (of other classes) with
    target t, and their counterfactuals."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    pgd = (int(pgd[0]), float(pgd[1]))
    if kind == "samples":
        rows, panels = generated.seed_y, {"seeds": (generated.seeds, generated.seed_y)}
    else:
        rows, panels = generated.cf_target, {"test images (other classes)": (generated.originals, generated.cf_target)}
    for (k, name, p), x in generated.images.items():
        if k == kind and p == pgd:
            panels[f"{name} classifier"] = (x, rows)
    if kind == "counterfactuals":  # each row's first images come from different source classes
        order = round_robin_order(generated.cf_target, generated.original_y)
        panels = {name: (x[order], r[order]) for name, (x, r) in panels.items()}
    return panels


def round_robin_order(rows: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """A permutation that, within each row value, cycles through the group values: the first image of every
    (row, group) pair in group order, then the second of each, ... (the sources are stored class-major, so
    without it a row of Fig. 3 would show mostly the first source class)."""
    seen: dict = {}
    rank = []
    for key in zip(rows.tolist(), groups.tolist()):
        rank.append(seen.get(key, 0))
        seen[key] = rank[-1] + 1
    key = torch.tensor(rank, dtype=torch.int64) * (int(groups.max()) + 1 if len(groups) else 1) + groups.cpu()
    return torch.argsort(key, stable=True)
