"""Ablations of Section 3.4.2-3.4.5 (Figs. 5-8): sweeps of one class's binary model d_k, scored by AUROC.

Every figure sweeps one setting around a common *ablation base*: the profile with the ``ablation`` section's base
overrides applied (fewer training images and epochs on small profiles, the paper's weight decay). Each sweep point
(x training seed) is one training run keyed by its config, so a point that several figures share (the base itself)
is trained and scored once. Points run as independent jobs through the profile's executor
(:func:`genrobust.store.executors.run_jobs`); a job trains d_k (train-if-missing, :func:`genrobust.training.binary.train_binary`) and
then scores it on the test set (score-if-missing, cached in ``runs/ablation/<hash>.json``):

  normal scenario       clean class-k test images vs clean other-class test images              (test eps = 0)
  adversarial scenario  class-k images perturbed to *minimize* d_k vs other-class images        (test eps > 0)
                        perturbed to *maximize* d_k, L2 PGD within eps

The paper's claims (:data:`genrobust.core.paper.ABLATION_CLAIMS`) are tested, not assumed. A claim is a set of paired
comparisons of two settings on the same test images (e.g. widest vs thinnest model, adversarial AUROC). Each
comparison's uncertainty is the spread of its per-seed differences (paired by seed): a t test over the training
seeds, the training run being the unit of replication (the test-image noise is inside each seed's difference).
Each comparison is judged by the one rule of :mod:`genrobust.measure.claims`
(supported / contradicted / not established, Holm over the claim's comparisons).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core import paper
from ..core.config import Profile, apply_overrides, config_hash, from_dict, to_dict
from ..core.device import default_device
from ..core.metrics import auroc, bootstrap_auroc
from ..core.scoring import binary_auroc_scores
from ..data.batches import to_float
from ..data.splits import prepare_data
from ..store.checkpoints import load_model
from ..store.executors import RunError, configure_threads, run_jobs
from ..store.io import read_json, write_json
from ..store.paths import runs_dir
from ..store.provenance import provenance
from ..store.runs import binary_run_config
from ..training.binary import train_binary
from .claims import Verdict, claim_decision, judge, scale_label, seed_t_subject

FIGURES = {
    "fig5": "Figure 5: model capacity and weight decay",
    "fig6": "Figure 6: training perturbation size",
    "fig7": "Figure 7: data augmentation",
    "fig8": "Figure 8: combined vs out-distribution AT",
}
AUGMENTATION_NAMES = {"none": "none", "crop_flip": "crop+flip", "autoaugment_cutout": "AutoAugment+Cutout"}
OBJECTIVE_NAMES = {"out": "out-distribution AT (Eq. 3)", "combined": "combined AT (Eq. 9)"}
RESNET18_NAMES = {0.5: "ResNet18Thinner", 0.75: "ResNet18Thin", 1.0: "ResNet18"}  # the paper's names (Fig. 5)
METRICS = {"clean": "clean AUROC (test eps 0)", "adv": "adversarial AUROC (mean over test eps > 0)"}

# ---------------------------------------------------------------------------------------------------------------
# Sweep points
@dataclass(frozen=True)
class Point:
    """One line of one figure for one training seed: ``overrides`` (dotted config keys) on top of the base."""
    figure: str
    setting: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int


def base_profile(cfg: Profile) -> Profile:
    """The ablation base: ``cfg`` with the ablation section's base overrides (None keeps the profile's value)."""
    a = cfg.ablation
    return apply_overrides(cfg, {"train.classes": (a.cls,), "data.train_per_class": a.train_per_class,
                                 "train.epochs": a.epochs, "model.width": a.base_width,
                                 "train.weight_decay": a.base_weight_decay})


def width_label(width: float, weight_decay: float) -> str:
    wd = "no wd" if weight_decay == 0 else "wd " + f"{weight_decay:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"width {float(width)}, {wd}"


def eps_label(eps: float) -> str:
    return f"train eps {eps:g}"


def sweep_points(cfg: Profile) -> list[Point]:
    """All points of Figs. 5-8 (each for every seed), in legend order."""
    a = cfg.ablation
    per_figure = [
        *[("fig5", width_label(w, wd), (("model.width", w), ("train.weight_decay", wd)))
          for wd in a.weight_decays for w in a.widths],
        *[("fig6", eps_label(e), (("train.eps", e),)) for e in a.train_eps],
        *[("fig7", AUGMENTATION_NAMES[g], (("train.augment", g),)) for g in a.augmentations],
        *[("fig8", OBJECTIVE_NAMES[o], (("train.objective", o),)) for o in a.objectives],
    ]
    return [Point(fig, setting, over, s) for fig, setting, over in per_figure for s in a.seeds]


def point_profile(cfg: Profile, point: Point) -> Profile:
    return apply_overrides(base_profile(cfg), {**dict(point.overrides), "train.seed": point.seed})


# ---------------------------------------------------------------------------------------------------------------
# Scoring one point
def eval_spec(cfg: Profile) -> dict:
    """What the scoring of every point depends on besides its training run."""
    a = cfg.ablation
    return {"k": a.cls, "test_eps": [float(e) for e in a.test_eps], "attack_steps": a.attack_steps,
            "n_test": a.n_test, "seed": cfg.eval.seed, "norm": "l2"}


def eval_path(profile: Profile, spec: dict) -> Path:
    key = {"run": binary_run_config(profile, spec["k"]), "eval": spec}
    return runs_dir() / "ablation" / f"{config_hash(key)}.json"


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
# Cost: an estimate from measured throughput, written down before the sweep runs
def _n_train_pos(profile: Profile) -> int:
    d = profile.data
    if d.train_per_class is not None:
        return d.train_per_class
    per_class = d.synthetic_train_per_class if d.source == "synthetic" else 5000  # CIFAR-10: 5,000 per class
    return per_class - d.val_per_class


def _n_test_pos(profile: Profile, n_test: int | None) -> int:
    d = profile.data
    avail = d.test_per_class or (d.synthetic_test_per_class if d.source == "synthetic" else 1000)
    return min(n_test or avail, avail)


def job_cost_units(profile: Profile, spec: dict) -> dict:
    """Forward+backward passes of one image through d_k ("units") of one job: training (the inner PGD runs on the
    negatives, and for Eq. 9 on the positives too), per-epoch selection, and the final scoring."""
    t = profile.train
    steps_per_epoch = _n_train_pos(profile) // (t.batch_size // 2)
    per_image = 1 + 0.5 * t.attack_steps * (2 if t.objective == "combined" else 1)
    train_u = t.epochs * steps_per_epoch * t.batch_size * per_image
    select_u = 0.0
    if t.select_on != "last":
        n_sel = profile.data.val_per_class if t.select_on == "val" else _n_test_pos(profile, None)
        n_sel = min(n_sel, t.select_n or n_sel)
        select_u = t.epochs * 2 * n_sel * (t.select_attack_steps + 1)
    n = _n_test_pos(profile, spec["n_test"])
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


# ---------------------------------------------------------------------------------------------------------------
# Running the sweep
def run_sweep(cfg: Profile, *, executor: str | None = None, workers: int | None = None,
              progress: bool = True) -> list[dict]:
    """Train and score every sweep point (missing ones only), as jobs; one record per (figure, setting, seed)."""
    spec = eval_spec(cfg)
    points = sweep_points(cfg)
    profiles = {pt: point_profile(cfg, pt) for pt in points}
    todo: dict[Path, Profile] = {}
    for pt, p in profiles.items():
        path = eval_path(p, spec)
        if not path.exists():
            todo.setdefault(path, p)
    if todo:
        # longest first: fewer idle workers at the end (cost from job_cost_units, ~ width^2)
        cost = {path: sum(job_cost_units(p, spec).values()) * p.model.width ** 2 for path, p in todo.items()}
        order = sorted(todo, key=cost.get, reverse=True)
        run_jobs(_ablation_job, [(to_dict(todo[path]), spec) for path in order],
                 executor=executor or cfg.executor, workers=workers or cfg.workers,
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


# ---------------------------------------------------------------------------------------------------------------
# Tables, uncertainty, sanity checks
def _scores(rec: dict, i: int):
    return np.asarray(rec["scores_pos"][i], dtype=np.float64), np.asarray(rec["scores_neg"][i], dtype=np.float64)


def points_table(records: list[dict], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (figure, setting, seed, test eps): AUROC and its 95% bootstrap CI over test examples."""
    rows = []
    for r in records:
        boot = bootstrap_auroc([_scores(r, i) for i in range(len(r["eps"]))], n_boot=n_boot, seed=seed)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        for i, e in enumerate(r["eps"]):
            # Fig. 5 has two factors: colour = width, line style = weight decay
            hue, style = r["setting"].split(", ", 1) if r["figure"] == "fig5" else (r["setting"], "")
            rows.append({"figure": r["figure"], "setting": r["setting"], "hue": hue, "style": style,
                         "seed": r["seed"], "eps": e, "auroc": r["auroc"][i], "ci_lo": float(lo[i]),
                         "ci_hi": float(hi[i]), "run": r["run"]})
    return pd.DataFrame(rows)


def summary_table(table: pd.DataFrame, figure: str) -> pd.DataFrame:
    """Per setting of one figure: clean AUROC and the mean adversarial AUROC (over test eps > 0), seed mean and,
    with several seeds, the seed range."""
    df = table[table.figure == figure]
    order = list(dict.fromkeys(df.setting))
    out = []
    for s in order:
        d = df[df.setting == s]
        clean = d[d.eps == 0].groupby("seed").auroc.mean()
        adv = d[d.eps > 0].groupby("seed").auroc.mean()
        row = {"setting": s, "seeds": d.seed.nunique()}
        for name, v in (("clean AUROC", clean), ("adv AUROC", adv)):
            if len(v):
                row[name] = round(float(v.mean()), 4)
                if len(v) > 1:
                    row[f"{name} seed range"] = f"[{v.min():.4f}, {v.max():.4f}]"
        row.update({f"AUROC @ eps {e:g}": round(float(d[d.eps == e].auroc.mean()), 4) for e in sorted(d.eps.unique())})
        out.append(row)
    return pd.DataFrame(out).set_index("setting")


def sanity_checks(records: list[dict], tol: float = 0.005) -> list[str]:
    """Findings that would make an AUROC untrustworthy: the adversarial AUROC should not exceed the clean one and
    should not rise with eps (a rise beyond ``tol`` hints at a weak attack or gradient masking); scores must be
    finite. Returns one line per finding (empty: nothing found)."""
    out = []
    for r in records:
        where = f"{r['figure']} / {r['setting']} / seed {r['seed']}"
        a = r["auroc"]
        if any(not math.isfinite(x) for x in a):
            out.append(f"{where}: non-finite AUROC {a}")
            continue
        for i in range(1, len(a)):
            if r["eps"][i] > r["eps"][i - 1] and a[i] > a[i - 1] + tol:
                out.append(f"{where}: AUROC rises from {a[i - 1]:.4f} (eps {r['eps'][i - 1]:g}) to {a[i]:.4f} "
                           f"(eps {r['eps'][i]:g}); the attack may be too weak (more ablation.attack_steps)")
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------------------------
# Claims
@dataclass(frozen=True)
class Comparison:
    """Under the paper's claim, ``higher`` scores above ``lower`` on ``metric`` ("clean" or "adv")."""
    claim: str
    metric: str
    higher: str
    lower: str


def comparisons(cfg: Profile) -> dict[str, list[Comparison]]:
    """The comparisons that test each claim of paper.ABLATION_CLAIMS with this sweep (empty list: not testable)."""
    a = cfg.ablation
    w_lo, w_hi = min(a.widths), max(a.widths)
    wd_lo, wd_hi = min(a.weight_decays), max(a.weight_decays)
    e_lo, e_hi = min(a.train_eps), max(a.train_eps)
    out = {
        "fig5_capacity": [Comparison("fig5_capacity", "adv", width_label(w_hi, wd), width_label(w_lo, wd))
                          for wd in a.weight_decays] if w_lo != w_hi else [],
        "fig5_weight_decay": [Comparison("fig5_weight_decay", "adv", width_label(w, wd_hi), width_label(w, wd_lo))
                              for w in a.widths] if wd_lo != wd_hi else [],
        "fig6_train_eps": [Comparison("fig6_train_eps", "clean", eps_label(e_lo), eps_label(e_hi)),
                           Comparison("fig6_train_eps", "adv", eps_label(e_hi), eps_label(e_lo))]
        if e_lo != e_hi else [],
        "fig7_augmentation": [Comparison("fig7_augmentation", "adv", AUGMENTATION_NAMES["autoaugment_cutout"],
                                         AUGMENTATION_NAMES[g]) for g in a.augmentations if g != "autoaugment_cutout"]
        if "autoaugment_cutout" in a.augmentations else [],
        "fig8_combined": [Comparison("fig8_combined", "adv", OBJECTIVE_NAMES["combined"], OBJECTIVE_NAMES["out"]),
                          Comparison("fig8_combined", "clean", OBJECTIVE_NAMES["out"], OBJECTIVE_NAMES["combined"])]
        if {"out", "combined"} <= set(a.objectives) else [],
    }
    return out


def _metric_eps(eps: list[float], metric: str) -> list[int]:
    return [i for i, e in enumerate(eps) if (e == 0) == (metric == "clean")]


def compare(records: list[dict], comp: Comparison) -> dict:
    """Difference higher - lower of the metric (mean over training seeds and the metric's test eps), the per-seed
    differences (paired by seed), and the subject the verdict engine judges: a t test over the training seeds
    (genrobust.measure.claims.seed_t_subject), the training run being the unit of replication. It reads each
    point's stored AUROCs only, so results/<profile>/05_ablations.json alone re-derives it."""
    fig = comp.claim.split("_")[0]
    hi = sorted((r for r in records if r["figure"] == fig and r["setting"] == comp.higher), key=lambda r: r["seed"])
    lo = sorted((r for r in records if r["figure"] == fig and r["setting"] == comp.lower), key=lambda r: r["seed"])
    base = {**dataclasses.asdict(comp), "figure": fig, "metric_name": METRICS[comp.metric]}
    idx = _metric_eps(hi[0]["eps"], comp.metric) if hi and lo else []
    if not idx:
        return {**base, "verdict": "not tested", "why": f"the sweep has no {METRICS[comp.metric]}"}
    if [r["seed"] for r in hi] != [r["seed"] for r in lo]:
        raise ValueError(f"{comp.claim}: seeds differ between {comp.higher!r} and {comp.lower!r}; pair them by seed")
    v_hi = float(np.mean([r["auroc"][i] for r in hi for i in idx]))
    v_lo = float(np.mean([r["auroc"][i] for r in lo for i in idx]))
    seed_diffs = [float(np.mean([h["auroc"][i] - l["auroc"][i] for i in idx])) for h, l in zip(hi, lo)]
    subject = seed_t_subject(seed_diffs, v_hi - v_lo, f"{METRICS[comp.metric]}: {comp.higher} vs {comp.lower}",
                             {"higher": comp.higher, "lower": comp.lower,
                              "n": hi[0].get("n_pos", 0) + hi[0].get("n_neg", 0) or None,
                              "test_eps": [hi[0]["eps"][i] for i in idx]}, "AUROC")
    return {**base, "higher_value": v_hi, "lower_value": v_lo, "diff": v_hi - v_lo, "seed_diffs": seed_diffs,
            "seeds": len(seed_diffs), "test_eps": [hi[0]["eps"][i] for i in idx], "_subject": subject}


def seeds_label(cfg: Profile) -> str:
    """The scale of 05's verdicts: the profile and the training runs behind each setting."""
    return scale_label(cfg.name, f"{len(cfg.ablation.seeds)} training runs (seeds) per setting")


def evaluate_claims(cfg: Profile, records: list[dict]) -> dict:
    """Every claim of paper.ABLATION_CLAIMS: {claim: {"source", "claim", "verdict", "why", "comparisons"}}; each
    comparison carries its stored Verdict ('verdict_record'), judged under the one rule of
    genrobust.measure.claims (t over seeds, Holm over the claim's comparisons). ``records``: sweep records, or the
    points of a stored 05_ablations.json (only figure, setting, seed, eps, auroc, n_pos, n_neg are read)."""
    out = {}
    for key, comps in comparisons(cfg).items():
        source, text = paper.ABLATION_CLAIMS[key]
        results = [compare(records, c) for c in comps]
        tested = [r for r in results if "_subject" in r]
        for r, v in zip(tested, judge(key, [r.pop("_subject") for r in tested], seeds_label(cfg))):
            r.update(verdict=v.decision, ci=None if v.ci95 is None else list(v.ci95), p=v.p,
                     p_adjusted=v.p_adjusted, why=v.render(), verdict_record=v.to_dict())
        if not results:
            verdict, why = "not tested", f"the sweep has a single value of what {source} varies; give it two or more"
        elif len(tested) < len(results):
            verdict, why = "not tested", next(r["why"] for r in results if r["verdict"] == "not tested")
        else:
            verdict, why = claim_decision(Verdict.from_dict(r["verdict_record"]) for r in tested)
        out[key] = {"source": source, "claim": text, "verdict": verdict, "why": why, "comparisons": results}
    return out


def regime_note(cfg: Profile) -> str:
    """How this profile's ablation differs from the paper's (Section 3.1) — the context of every verdict."""
    b = base_profile(cfg)
    a = cfg.ablation
    n_pos = _n_train_pos(b)
    data = "SYNTHETIC data (not CIFAR-10)" if b.data.source == "synthetic" else "CIFAR-10"
    seeds = (f"{len(a.seeds)} training seeds (seed spread shown)" if len(a.seeds) > 1 else
             "1 training seed, so the CIs cover test-set sampling only, not training randomness")
    return (f"Our regime: {data}, d_{a.cls} trained {b.train.epochs} epochs on {n_pos} class-{a.cls} images "
            f"(+ as many negatives per epoch), {b.model.name} base width {b.model.width:g}, weight decay "
            f"{b.train.weight_decay:g}, {b.train.attack_steps}-step PGD at train eps {b.train.eps:g}; scored on "
            f"{_n_test_pos(b, a.n_test)} test images per side with {a.attack_steps}-step L2 PGD; {seeds}. "
            f"Paper: {paper.SETUP['epochs']} epochs on all 5,000 images per class, "
            f"{paper.SETUP['binary_model']}.")


def record_for_json(records: list[dict], table: pd.DataFrame) -> list[dict]:
    """The records without per-example scores (they stay in runs/ablation/), with bootstrap CIs per eps."""
    out = []
    for r in records:
        t = table[(table.figure == r["figure"]) & (table.setting == r["setting"]) & (table.seed == r["seed"])]
        out.append({k: v for k, v in r.items() if k not in ("scores_pos", "scores_neg", "provenance")}
                   | {"ci_lo": t.ci_lo.tolist(), "ci_hi": t.ci_hi.tolist()})
    return out
