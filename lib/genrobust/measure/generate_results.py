"""What notebook 04 reports from the generated images: the FID (and KID) of every Tab. 2 cell and of the anchor
against one reference subset, Tab. 2's results record, and the panels of Figs. 2-3.

FID (:func:`score`): every cell (PGD configuration x classifier x {samples, counterfactuals}) against the same
seeded random subset of the training set (train + validation split), with the same number of images in every cell
of a kind (so the generative and softmax classifiers are always compared at equal N); plus the anchor
FID(test, train) on the counterfactuals' unmodified test images (the counterfactuals' N).
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..core import paper
from ..core.config import GenConfig
from . import fid as gfid
from .generate_starts import KINDS, Generated

__all__ = ["SPEED_IMAGES", "score", "FULL_N", "comparability", "tab2_record", "figure_panels", "round_robin_order"]


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
