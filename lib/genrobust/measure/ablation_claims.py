"""The paper's ablation claims (:data:`genrobust.core.paper.ABLATION_CLAIMS`), tested on the sweep, not assumed.

A claim is a set of paired comparisons of two settings on the same test images (e.g. widest vs thinnest model,
adversarial AUROC). Each comparison's uncertainty is the spread of its per-seed differences (paired by seed): a t test
over the training seeds, the training run being the unit of replication (the test-image noise is inside each seed's
difference). Each comparison is judged by the one rule of :mod:`genrobust.measure.claims`
(supported / contradicted / not established, Holm over the claim's comparisons).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core import paper
from ..core.config import Profile
from .ablation_points import AUGMENTATION_NAMES, METRICS, OBJECTIVE_NAMES, eps_label, width_label
from .claims import claim_decision, judge, scale_label, seed_t_subject


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
    tested comparison carries its stored Verdict ('verdict_record', its one stored form: metrics schema 5), judged
    under the one rule of genrobust.measure.claims (t over seeds, Holm over the claim's comparisons); an untested
    one its own 'verdict' ("not tested") and 'why'. ``records``: sweep records, or the points of a stored
    05_ablations.json (only figure, setting, seed, eps, auroc, n_pos, n_neg are read)."""
    out = {}
    for key, comps in comparisons(cfg).items():
        source, text = paper.ABLATION_CLAIMS[key]
        results = [compare(records, c) for c in comps]
        tested = [r for r in results if "_subject" in r]
        verdicts = judge(key, [r.pop("_subject") for r in tested], seeds_label(cfg))
        for r, v in zip(tested, verdicts):  # the verdict stored once: its record, no copies of its fields beside it
            r["verdict_record"] = v.to_dict()
        verdict, why = claim_decision(verdicts, [r["why"] for r in results if "verdict_record" not in r],
                                      f"the sweep has a single value of what {source} varies; give it two or more")
        out[key] = {"source": source, "claim": text, "verdict": verdict, "why": why, "comparisons": results}
    return out
