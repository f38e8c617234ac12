"""Running the ablation sweep of Section 3.4.2-3.4.5 (Figs. 5-8): each point trains one class's binary model d_k
and scores it by AUROC, as jobs through the profile's executor.

A job (:func:`score_point`) trains d_k (train-if-missing, :func:`genrobust.training.binary.train_binary`) and then
scores it on the test set (score-if-missing, cached in ``runs/ablation/<hash>.json``, :func:`eval_path`):

  normal scenario       clean class-k test images vs clean other-class test images              (test eps = 0)
  adversarial scenario  class-k images perturbed to *minimize* d_k vs other-class images        (test eps > 0)
                        perturbed to *maximize* d_k, L2 PGD within eps

The sweep's parts, one job each: its points and names (:mod:`~genrobust.measure.ablation_points`), its cost
(:mod:`~genrobust.measure.ablation_cost`), its tables and checks (:mod:`~genrobust.measure.ablation_tables`), the
paper's claims tested on it (:mod:`~genrobust.measure.ablation_claims`). This module re-exports their public names,
so notebook 05 and the reports reach the whole sweep as ``ablate.<name>``.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from ..core.config import Profile, from_dict, to_dict
from ..core.device import default_device
from ..core.stats import auroc
from ..core.scoring import binary_auroc_scores
from ..data.batches import to_float
from ..data.splits import prepare_data
from ..store.checkpoints import load_model
from ..store.executors import JobSettings, RunError, configure_threads, run_jobs
from ..store.io import read_json, write_json
from ..store.paths import runs_dir
from ..store.provenance import provenance
from ..training.binary import train_binary
from .ablation_claims import Comparison, compare, comparisons, evaluate_claims, seeds_label
from .ablation_cost import estimate_runtime, job_cost_units, relative_cost
from .ablation_points import (AUGMENTATION_NAMES, FIGURES, METRICS, OBJECTIVE_NAMES, RESNET18_NAMES, Point,
                              base_profile, eps_label, eval_path, eval_spec, point_profile, regime_note, sweep_points,
                              width_label)
from .ablation_tables import points_table, record_for_json, sanity_checks, summary_table

__all__ = [  # this module's own, then the sweep's parts it re-exports (notebook 05, the reports)
    "scoring_pairs", "seeded_init", "score_point", "run_sweep",
    "Comparison", "compare", "comparisons", "evaluate_claims", "seeds_label",
    "estimate_runtime", "job_cost_units", "relative_cost",
    "AUGMENTATION_NAMES", "FIGURES", "METRICS", "OBJECTIVE_NAMES", "RESNET18_NAMES", "Point", "base_profile",
    "eps_label", "eval_path", "eval_spec", "point_profile", "regime_note", "sweep_points", "width_label",
    "points_table", "record_for_json", "sanity_checks", "summary_table"]


def scoring_pairs(data, k: int, n: int | None, seed: int):
    """Positives: up to ``n`` class-k test images (seeded); negatives: as many other-class test images, drawn
    uniformly from the other-class examples (seeded). Returns float (n, 3, 32, 32) in [0, 1] each."""
    g = torch.Generator().manual_seed(seed)
    pos = (data.test_y == k).nonzero(as_tuple=True)[0]
    neg = (data.test_y != k).nonzero(as_tuple=True)[0]
    if len(pos) == 0:
        raise ValueError(f"no test images of class {k}; check data.test_per_class")
    pos = pos[torch.randperm(len(pos), generator=g)][:n or len(pos)]
    neg = neg[torch.randperm(len(neg), generator=g)][:len(pos)]
    return to_float(data.test_x[pos]), to_float(data.test_x[neg])


@contextlib.contextmanager
def seeded_init(seed: int):
    """Seed the global CPU RNG from the training seed for the duration (restored on exit): ``train_binary`` draws
    the initial weights of d_k from the global RNG, so without this every job process (fresh, torch's default seed)
    would start all seeds from the same weights, and in-process runs would depend on what ran before them."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield


def score_point(profile: Profile, spec: dict, data=None, *, device=None) -> dict:
    """Train d_k of this point (if missing), then its AUROC over the test eps grid (if missing); the record is
    cached atomically at :func:`eval_path` and holds the per-example scores (for the bootstrap)."""
    path = eval_path(profile, spec)
    if path.exists():
        return read_json(path)
    device = torch.device(device) if device else default_device()
    data = data or prepare_data(profile.data, progress=False)
    k = spec["k"]
    with seeded_init(profile.train.seed):
        res = train_binary(profile, k, data, device=device, progress=False)
    model = load_model(res["checkpoint"], device)
    x_pos, x_neg = scoring_pairs(data, k, spec["n_test"], spec["seed"])
    if profile.train.channels_last:  # faster CPU convolutions (as in training); scores are the same function
        model = model.to(memory_format=torch.channels_last)
        x_pos, x_neg = (x.contiguous(memory_format=torch.channels_last) for x in (x_pos, x_neg))
    t0 = time.time()
    scores = binary_auroc_scores(model, x_pos, x_neg, spec["test_eps"], steps=spec["attack_steps"],
                                 seed=spec["seed"], device=device)
    eps = [float(e) for e in spec["test_eps"]]
    rec = {
        "run": Path(res["checkpoint"]).parent.name, "checkpoint": res["checkpoint"], "best_epoch": res["best_epoch"],
        "epochs": res["epochs"], "parameters": res["parameters"],
        "train_wall_time_s": res["provenance"]["wall_time_s"], "eval_wall_time_s": round(time.time() - t0, 1),
        "n_pos": len(x_pos), "n_neg": len(x_neg), "eval": spec, "eps": eps,
        "auroc": [auroc(*scores[e]) for e in eps],
        "scores_pos": [scores[e][0].tolist() for e in eps], "scores_neg": [scores[e][1].tolist() for e in eps],
        "data_source": data.source,
        "provenance": provenance({"run": res["provenance"]["config"], "eval": spec}, data_source=data.source,
                                 seed=spec["seed"], device=device),
    }
    write_json(path, rec)
    return read_json(path)


def _ablation_job(profile_dict: dict, spec: dict) -> dict:
    """One sweep point as a job (module-level, so the local/SLURM executors can pickle it)."""
    profile = from_dict(profile_dict)
    configure_threads(profile)
    rec = score_point(profile, spec)
    return {"run": rec["run"], "auroc": rec["auroc"]}



# ---------------------------------------------------------------------------------------------------------------
# Running the sweep
def run_sweep(cfg: Profile, *, jobs: JobSettings | None = None, progress: bool = True) -> list[dict]:
    """Train and score every sweep point (missing ones only), as jobs through the one executor
    (:func:`genrobust.store.executors.run_jobs` under ``jobs``; None: the profile's executor, workers and SLURM
    resources), longest first; one record per (figure, setting, seed)."""
    spec = eval_spec(cfg)
    points = sweep_points(cfg)
    profiles = {pt: point_profile(cfg, pt) for pt in points}
    todo: dict[Path, Profile] = {}
    for pt, p in profiles.items():
        path = eval_path(p, spec)
        if not path.exists():
            todo.setdefault(path, p)
    if todo:
        order = sorted(todo, key=lambda path: relative_cost(todo[path], spec), reverse=True)  # longest first
        run_jobs(_ablation_job, [(to_dict(todo[path]), spec) for path in order], jobs=jobs or JobSettings.of(cfg),
                 desc=f"ablation runs ({len(order)} jobs)", progress=progress)
    records = []
    for pt, p in profiles.items():
        path = eval_path(p, spec)
        if not path.exists():
            raise RunError(f"ablation point {pt.figure} / {pt.setting} / seed {pt.seed} has no scores ({path}); "
                           f"see the job logs in {runs_dir() / 'jobs'}")
        records.append({"figure": pt.figure, "setting": pt.setting, "seed": pt.seed,
                        "overrides": dict(pt.overrides), **read_json(path)})
    return records
