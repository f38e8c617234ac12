"""The ablation sweep's points (Section 3.4.2-3.4.5, Figs. 5-8): what is trained and scored, and under which names.

Every figure sweeps one setting around a common *ablation base*: the profile with the ``ablation`` section's base
overrides applied (fewer training images and epochs on small profiles, the paper's weight decay). Each sweep point
(x training seed) is one training run keyed by its config, so a point that several figures share (the base itself)
is trained and scored once: its scores live at :func:`eval_path`, keyed by the run and the scoring spec
(:func:`eval_spec`). Also the sweep's image counts and the note on how its regime differs from the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import paper
from ..core.config import Profile, apply_overrides, config_hash
from ..store.paths import runs_dir
from ..store.runs import binary_run_config

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
# Scoring spec, image counts, regime
def eval_spec(cfg: Profile) -> dict:
    """What the scoring of every point depends on besides its training run."""
    a = cfg.ablation
    return {"k": a.cls, "test_eps": [float(e) for e in a.test_eps], "attack_steps": a.attack_steps,
            "n_test": a.n_test, "seed": cfg.eval.seed, "norm": "l2"}


def eval_path(profile: Profile, spec: dict) -> Path:
    key = {"run": binary_run_config(profile, spec["k"]), "eval": spec}
    return runs_dir() / "ablation" / f"{config_hash(key)}.json"


def n_train_pos(profile: Profile) -> int:
    """Class-k training images of d_k under ``profile`` (CIFAR-10: 5,000 per class less the validation split)."""
    d = profile.data
    if d.train_per_class is not None:
        return d.train_per_class
    per_class = d.synthetic_train_per_class if d.source == "synthetic" else 5000  # CIFAR-10: 5,000 per class
    return per_class - d.val_per_class


def n_test_pos(profile: Profile, n_test: int | None) -> int:
    """Class-k test images that score d_k (at most ``n_test``; CIFAR-10: 1,000 per class)."""
    d = profile.data
    avail = d.test_per_class or (d.synthetic_test_per_class if d.source == "synthetic" else 1000)
    return min(n_test or avail, avail)



def regime_note(cfg: Profile) -> str:
    """How this profile's ablation differs from the paper's (Section 3.1) — the context of every verdict."""
    b = base_profile(cfg)
    a = cfg.ablation
    n_pos = n_train_pos(b)
    data = "SYNTHETIC data (not CIFAR-10)" if b.data.source == "synthetic" else "CIFAR-10"
    seeds = (f"{len(a.seeds)} training seeds (seed spread shown)" if len(a.seeds) > 1 else
             "1 training seed, so the CIs cover test-set sampling only, not training randomness")
    return (f"Our regime: {data}, d_{a.cls} trained {b.train.epochs} epochs on {n_pos} class-{a.cls} images "
            f"(+ as many negatives per epoch), {b.model.name} base width {b.model.width:g}, weight decay "
            f"{b.train.weight_decay:g}, {b.train.attack_steps}-step PGD at train eps {b.train.eps:g}; scored on "
            f"{n_test_pos(b, a.n_test)} test images per side with {a.attack_steps}-step L2 PGD; {seeds}. "
            f"Paper: {paper.SETUP['epochs']} epochs on all 5,000 images per class, "
            f"{paper.SETUP['binary_model']}.")
