"""The ablation sweep's cost: forward+backward passes per job, and the sweep's wall time estimated from a measured
training throughput, written down before the sweep runs; the same cost orders the jobs longest first.
"""
from __future__ import annotations

import pandas as pd

from ..core.config import Profile
from .ablation_points import eval_path, eval_spec, n_test_pos, n_train_pos, point_profile, sweep_points


def job_cost_units(profile: Profile, spec: dict) -> dict:
    """Forward+backward passes of one image through d_k ("units") of one job: training (the inner PGD runs on the
    negatives, and for Eq. 9 on the positives too), per-epoch selection, and the final scoring."""
    t = profile.train
    steps_per_epoch = n_train_pos(profile) // (t.batch_size // 2)
    per_image = 1 + 0.5 * t.attack_steps * (2 if t.objective == "combined" else 1)
    train_u = t.epochs * steps_per_epoch * t.batch_size * per_image
    select_u = 0.0
    if t.select_on != "last":
        n_sel = profile.data.val_per_class if t.select_on == "val" else n_test_pos(profile, None)
        n_sel = min(n_sel, t.select_n or n_sel)
        select_u = t.epochs * 2 * n_sel * (t.select_attack_steps + 1)
    n = n_test_pos(profile, spec["n_test"])
    eval_u = 2 * n * sum(spec["attack_steps"] + 1 if e > 0 else 0.5 for e in spec["test_eps"])
    return {"train": train_u, "select": select_u, "eval": eval_u}


def estimate_runtime(cfg: Profile, *, images_per_s: float, ref_width: float | None = None,
                     width_exponent: float = 2.0, job_overhead_s: float = 10.0,
                     notebook_overhead_s: float = 60.0) -> dict:
    """Estimated wall time of the sweep from a *measured* training throughput: ``images_per_s`` of one job of the
    profile's own d_k (width ``ref_width``, default the profile's, its objective and attack steps), with the
    profile's ``workers`` jobs running side by side. Cost scales with width^width_exponent (2: channels^2 FLOPs;
    thin ResNet18s on a CPU measure sub-quadratic -- 1.3 for 0.125 -> 0.25 and 1.6 for 0.25 -> 0.5 -- so 2 errs
    long). Jobs run longest first; wall time is the
    greedy schedule over ``workers`` slots. Returns {"jobs": DataFrame, "worker_s", "wall_s", ...}."""
    ref_width = ref_width or cfg.model.width
    ref_units = 1 + 0.5 * cfg.train.attack_steps * (2 if cfg.train.objective == "combined" else 1)
    s_per_unit = 1.0 / (images_per_s * ref_units)
    spec = eval_spec(cfg)
    rows, seen = [], set()
    for pt in sweep_points(cfg):
        p = point_profile(cfg, pt)
        key = eval_path(p, spec).name
        if key in seen:
            continue
        seen.add(key)
        u = job_cost_units(p, spec)
        scale = (p.model.width / ref_width) ** width_exponent * s_per_unit
        rows.append({"figure": pt.figure, "setting": pt.setting, "seed": pt.seed, "width": p.model.width,
                     "train_s": u["train"] * scale, "select_s": u["select"] * scale, "eval_s": u["eval"] * scale,
                     "total_s": sum(u.values()) * scale + job_overhead_s})
    jobs = pd.DataFrame(rows).sort_values("total_s", ascending=False, ignore_index=True)
    slots = 1 if cfg.executor == "inline" else (len(jobs) or 1) if cfg.executor == "slurm" else cfg.workers
    finish = [0.0] * max(1, slots)
    for c in jobs["total_s"] if len(jobs) else []:
        i = finish.index(min(finish))
        finish[i] += c
    wall = max(finish) + notebook_overhead_s
    return {"jobs": jobs.round({"train_s": 1, "select_s": 1, "eval_s": 1, "total_s": 1}), "n_jobs": len(jobs), "worker_s": round(float(jobs["total_s"].sum()), 1),
            "wall_s": round(wall, 1), "slots": slots, "images_per_s": images_per_s, "ref_width": ref_width,
            "assumptions": f"{images_per_s:g} training images/s per job at width {ref_width:g} "
                           f"({cfg.model.name}, {cfg.train.attack_steps}-step PGD, {cfg.workers} jobs side by "
                           f"side), cost ~ width^{width_exponent:g}, {job_overhead_s:g} s start-up per job, "
                           f"{notebook_overhead_s:g} s for the notebook itself"}




def relative_cost(profile: Profile, spec: dict, width_exponent: float = 2.0) -> float:
    """One job's cost in units x width^width_exponent (what :func:`estimate_runtime` scales by): the order of the
    sweep's jobs, longest first (fewer idle workers at the end)."""
    return sum(job_cost_units(profile, spec).values()) * profile.model.width ** width_exponent
