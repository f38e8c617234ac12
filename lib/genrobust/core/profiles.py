"""The named presets as data tables: smoke / cpu / gpu / paper (why each size: docs/profiles.md)

The named profiles, as data: ``paper`` (Section 3.1's values), ``cpu`` (real CIFAR-10 on 2 CPU cores), ``gpu``
(the paper's d_k on one GPU in minutes) and ``smoke`` (synthetic data, every code path in seconds), each a frozen
:class:`~genrobust.core.sections.Profile` built from the config sections; :func:`get_profile` picks one by name.

Each preset states what it sets; why each size is what it is (the measurements behind it, each number with its
source) is in docs/profiles.md, one section per profile (docs/gpu-profile.md for ``gpu``).
"""
from __future__ import annotations

from .registry import REDUCED_AUTOATTACK
from .schema import ConfigError
from .sections import (AblationConfig, CalibConfig, DataConfig, EvalConfig, GenConfig, ModelConfig, Profile,
                       SlurmConfig, SoftmaxConfig, TrainConfig)

# The paper's Section 3.1 values; the other profiles say how and why they differ (docs/profiles.md#paper).
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
    # the common FID protocol (the paper states no N): 50,000 samples vs the training set; counterfactuals start from
    # test images, so they (and the test anchor) use the whole test set
    gen=GenConfig(n_samples=50000, n_counterfactuals=10000, n_reference=None),
    ablation=AblationConfig(),
    slurm=SlurmConfig(gpus=1, cpus=8, mem_gb=32, time_min=4320),  # one GPU job per class model: days each
    workers=1,
)

# Real CIFAR-10 on 2 CPU cores, every size set by measurement on such a machine (docs/profiles.md#cpu).
CPU = Profile(
    name="cpu",
    description="Real CIFAR-10 (JPEG copy) on 2 CPU cores: thin ResNet18 d_k, few epochs on a subset, short PGD, "
                "validation-split model selection; sized for the 60-minute training budget.",
    data=DataConfig(source="auto", val_per_class=100, train_per_class=None, test_per_class=None),
    # width 0.125: 2.5x the epochs of width 0.25 in the same minutes (docs/profiles.md#cpu-d_k)
    model=ModelConfig(name="resnet18", width=0.125),
    train=TrainConfig(objective="out", eps=0.3, eps1=0.3, attack_steps=2, epochs=8, batch_size=128, lr=0.1,
                      lr_schedule="onecycle", lr_drop_epoch=None, weight_decay=5e-4, select_on="val",
                      select_every=1, select_attack_steps=5, select_n=100, augment="crop_flip", channels_last=True),
    # the paper's equal capacity: about the 10 d_k's parameters together; 2 epochs set the wall time
    # (docs/profiles.md#cpu-softmax-baseline)
    softmax=SoftmaxConfig(model="resnet18", width=0.4, eps=0.5, attack_steps=2, epochs=2, lr=0.1,
                          lr_schedule="onecycle", lr_drop_epoch=None, select_on="val", channels_last=True),
    calib=CalibConfig(select_on="val", train_per_class=1000),
    # notebook 03 in ~40 min on 2 cores; one unit is one batch of 250 positions (docs/profiles.md#cpu-evaluation)
    eval=EvalConfig(n_test=1000, steps=20, n_strong=250, strong_eps_more=(0.25, 1.0), budgets=REDUCED_AUTOATTACK,
                    shard_batches=1, units_per_job=4),
    # Tab. 2 at CPU scale: 2,050 images per cell (> 2048: full-rank covariance) against a cached 10,000-image
    # reference; FIDs at this N are comparable only among themselves (docs/profiles.md#cpu-generation)
    gen=GenConfig(n_samples=2050, n_reference=10000, batch_size=250, kid_subsets=20),
    # Figs. 5-8 at CPU scale, 5 training seeds per point (docs/profiles.md#cpu-ablations)
    ablation=AblationConfig(widths=(0.125, 0.25, 0.5), weight_decays=(0.0, 1e-4), train_eps=(0.1, 0.2, 0.3, 0.5),
                            attack_steps=10, n_test=300, seeds=(0, 1, 2, 3, 4), train_per_class=1000, epochs=6,
                            base_weight_decay=1e-4),
    workers=2,   # two single-thread jobs beat one two-thread job on 2 cores (docs/profiles.md#cpu)
    num_threads=1,
)

# The paper's d_k architecture in minutes on one GPU: notebooks 01-04 in one device call under a 420 s deadline;
# every size is derived in docs/gpu-profile.md from rates measured on an H200.
GPU = Profile(
    name="gpu",
    description="The paper's d_k architecture on one GPU in minutes: ResNet18Thinner (width 0.5) d_k, Eq. 3 with "
                "PGD-10 at L2 eps 0.3, 6 epochs on all of CIFAR-10 (JPEG copy) less a validation split; softmax "
                "ResNet50 PGD-7 for 1 epoch; the paper's attacks on 2,000 test images, the worst case on 250 at "
                "eps 0.5. Sizing: docs/gpu-profile.md.",
    data=DataConfig(source="auto", val_per_class=100, train_per_class=None, test_per_class=None),
    model=ModelConfig(name="resnet18", width=0.5),
    train=TrainConfig(objective="out", eps=0.3, eps1=0.3, attack_steps=10, epochs=6, batch_size=128, lr=0.1,
                      lr_schedule="onecycle", lr_drop_epoch=None, weight_decay=1e-4, select_on="val",
                      select_every=2, select_attack_steps=10, select_n=500, augment="crop_flip",
                      channels_last=False),
    # far from its plateau (the paper trains 150 epochs)
    softmax=SoftmaxConfig(model="resnet50", width=1.0, eps=0.5, attack_steps=7, epochs=1, lr=0.1,
                          lr_schedule="onecycle", lr_drop_epoch=None, select_on="val", channels_last=False),
    calib=CalibConfig(select_on="val"),
    # the worst case at eps 0.5 only: 0.25 and 1.0 do not fit the deadline (docs/gpu-profile.md)
    eval=EvalConfig(n_test=2000, steps=20, n_strong=250, strong_eps=0.5, strong_eps_more=(),
                    budgets=REDUCED_AUTOATTACK, batch_size=500,
                    shard_batches=1, units_per_job=8, channels_last=False),
    # the device generates (notebook 04 with fid='later'); FID and KID are computed on the CPU by `gpu_run.py finish`
    gen=GenConfig(n_samples=2050, n_reference=10000, batch_size=1025, kid_subsets=100),
    # notebook 05 is not part of the gpu run (tools/gpu_run runs 01-04); these are the cpu profile's sweeps
    ablation=AblationConfig(widths=(0.125, 0.25, 0.5), weight_decays=(0.0, 1e-4), train_eps=(0.1, 0.2, 0.3, 0.5),
                            attack_steps=10, n_test=300, seeds=(0, 1), train_per_class=1000, epochs=6,
                            base_weight_decay=1e-4),
    workers=1,
    release_weights=False,  # ResNet50 alone is ~94 MB: too large for git and for the GPU machine's return
)

# Every code path in seconds for CI, on synthetic data; its numbers say nothing about the paper
# (docs/profiles.md#smoke).
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
    # tiny AutoAttack budgets: notebook 03 runs every attack and masking check in seconds (FAB-T and Square, the
    # slowest per image, halved from 10 and 100 for CI's time: docs/profiles.md#smoke)
    eval=EvalConfig(n_test=100, steps=5, n_strong=40, eps_grid=(0.0, 0.5, 1.0), strong_eps_more=(1.0,),
                    budgets=(("apgd_iters", 10), ("targets", 3), ("fab_iters", 5), ("square_queries", 50))),
    # tiny N: exercises the real Inception path in CI; singular covariances, numbers not comparable to anything
    gen=GenConfig(n_samples=20, n_reference=40, eps=10.0, n_show=2),
    ablation=AblationConfig(widths=(0.5, 1.0), weight_decays=(0.0, 1e-4), train_eps=(0.1, 0.3),
                            augmentations=("crop_flip", "autoaugment_cutout"), test_eps=(0.0, 0.5), attack_steps=2,
                            base_weight_decay=1e-4, n_boot=200),
    workers=2,
    num_threads=1,
    # the K d_k in one job, as the gpu profile trains them on CUDA: the same numbers as one job per class (to float
    # rounding), without nine more process starts (`genrobust train --profile smoke`: 64 s -> 24 s on 2 idle cores; docs/profiles.md)
    train_path="fused",
)

PROFILES = {p.name: p for p in (SMOKE, CPU, GPU, PAPER)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (e.g. PROFILE=smoke)")
    return PROFILES[name]
