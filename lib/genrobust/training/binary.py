"""d_k per class, or all classes at once (both: fit + steppers.BinaryStepper)

Binary models d_k (Eq. 3 out-distribution AT, Eq. 9 combined AT): one run per class, or all classes together as
one vmapped network (:mod:`genrobust.training.fused`) with the same run files and, in tests, the same weights.
A run is keyed by :func:`genrobust.store.runs.binary_run_config` and trained by :func:`genrobust.training.loop.fit`
with a :class:`genrobust.training.steppers.BinaryStepper` (K = 1 per class, K > 1 together).
"""
from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from ..core.config import Profile, TrainConfig, to_dict
from ..core.device import default_device
from ..data.base import CLASSES
from ..data.batches import DEVICE_AUGMENTATIONS, BinaryBatches, DeviceBinaryBatches, augmented, to_float
from ..data.splits import Prepared, prepare_data
from ..store.io import read_json
from ..store.runs import binary_result, binary_run_config, run_dir_for
from .loop import (BestCheckpoint, Engine, Selection, TrainingRun, engine_for, fit, open_run, seeded_model,
                   select_split)
from .steppers import BinarySelection, BinaryStepper


def _binary_selection(data: Prepared, cfg: TrainConfig, k: int, device) -> Selection:
    """d_k's selection: clean and adversarial AUROC on the selection split (class-k images vs as many other-class
    images, drawn evenly and seeded; a :class:`BinarySelection`, which the K-model stepper scores for all K d_k at
    once), keeping the best adversarial AUROC; no selection without a selection split."""
    sel = select_split(data, cfg.select_on, cfg.select_n, cfg.seed)
    if sel is None:
        return Selection()
    x, y = sel
    pos = to_float(x[y == k])
    neg_idx = (y != k).nonzero(as_tuple=True)[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    neg = to_float(x[neg_idx[torch.randperm(len(neg_idx), generator=gen)[:len(pos)]]])
    split_name = cfg.select_on if cfg.select_on != "last" else "val"
    metrics = BinarySelection(pos, neg, split_name, cfg.eps, cfg.select_attack_steps, cfg.seed, torch.device(device))
    return Selection(metrics, None if cfg.select_on == "last" else f"{split_name}_adv_auroc")


def _binary_batches(data: Prepared, cfg: TrainConfig, k: int, x_train: torch.Tensor, on_device: bool):
    """(make_batches(g), steps per epoch) of d_k's balanced, augmented batches: drawn on the CPU in the per-class
    path's exact order (BinaryBatches, then augment from the same generator), or on the images' device
    (DeviceBinaryBatches; ``x_train`` is then the training set uploaded once)."""
    if on_device:
        batches = lambda g: DeviceBinaryBatches(x_train, data.train_y, k, cfg.batch_size, cfg.augment,  # noqa: E731
                                                generator=g)
    else:
        batches = lambda g: augmented(BinaryBatches(x_train, data.train_y, k, cfg.batch_size,  # noqa: E731
                                                    generator=g), cfg.augment, g)
    steps_per_epoch = len(BinaryBatches(data.train_x, data.train_y, k, cfg.batch_size, generator=torch.Generator()))
    if steps_per_epoch == 0:
        raise ValueError(f"class {k} has too few training images for batch size {cfg.batch_size}; "
                         "lower train.batch_size or raise data.train_per_class")
    return batches, steps_per_epoch


def _engine(profile: Profile, device) -> Engine:
    """The engine settings of d_k's training on ``device``; the data stay on the CPU for an augmentation that the
    device path does not draw (autoaugment_cutout runs per image on the CPU)."""
    engine = engine_for(profile.engine, device)
    if engine.data_on_device and profile.train.augment not in DEVICE_AUGMENTATIONS:
        engine = dataclasses.replace(engine, data_on_device=False)
    return engine


def _train_images(data: Prepared, engine: Engine, device) -> torch.Tensor:
    """The uint8 training images the batches index: uploaded to ``device`` once when the engine keeps the data
    there, else the CPU tensor."""
    return data.train_x.to(device) if engine.data_on_device else data.train_x


def _binary_ckpt_config(profile: Profile, k: int) -> dict:
    return {**to_dict(profile.model), "k": k, "num_outputs": 1}


def _open_binary_run(profile: Profile, k: int, data: Prepared, device, channels_last: bool, engine: Engine,
                     x_train: torch.Tensor) -> TrainingRun:
    """d_k's run record: its directory and config, seeded model, optimizer and schedule, resumed from last.pt."""
    cfg: TrainConfig = profile.train
    run_config = binary_run_config(profile, k)
    batches, steps_per_epoch = _binary_batches(data, cfg, k, x_train, engine.data_on_device)
    run = TrainingRun(run_dir_for(run_config), run_config, label=f"d_{k} ({CLASSES[k]})",
                      model=seeded_model(profile.model.name, 1, profile.model.width, cfg.seed * 1000 + k),
                      generator=torch.Generator().manual_seed(cfg.seed), make_batches=batches,
                      steps_per_epoch=steps_per_epoch, cfg=cfg, base_lr=cfg.lr_for(k), epochs=cfg.epochs,
                      checkpoint=BestCheckpoint("binary", _binary_ckpt_config(profile, k)),
                      selection=_binary_selection(data, cfg, k, device))
    return open_run(run, device=device, channels_last=channels_last)


def train_binary(profile: Profile, k: int, data: Prepared | None = None, *, device=None, progress=True) -> dict:
    """Train d_k (train-if-missing): :func:`genrobust.training.loop.fit` with a K = 1
    :class:`~genrobust.training.steppers.BinaryStepper`. Returns the run's result.json content."""
    run_config = binary_run_config(profile, k)
    run_dir = run_dir_for(run_config)
    if (run_dir / "result.json").exists():
        return read_json(run_dir / "result.json")
    device = torch.device(device) if device else default_device()
    data = data or prepare_data(profile.data, progress=progress)
    engine = _engine(profile, device)
    run = _open_binary_run(profile, k, data, device, profile.train.channels_last, engine,
                           _train_images(data, engine, device))
    return fit([run], BinaryStepper([run], profile.train, device, engine), data_source=data.source, device=device,
               desc=run.label, progress=progress, engine=engine)[0]


# ---------------------------------------------------------------------------------------------------------------
# The K binary models trained together (genrobust.training.fused): same runs, same files, same numbers
def train_binaries_fused(profile: Profile, classes=None, data: Prepared | None = None, *, device=None,
                         progress: bool = True) -> list[dict]:
    """Train d_k for ``classes`` (default: profile.train.classes) together as one vmapped network
    (:class:`genrobust.training.fused.FusedBinaryModels`), train-if-missing: :func:`genrobust.training.loop.fit`
    with a K-model :class:`~genrobust.training.steppers.BinaryStepper`. Returns each class's result.json content.

    Every class keeps its own run directory, with the files of :func:`train_binary` in the same formats, so the
    two paths are interchangeable, also mid-run: a fused run interrupted after epoch e resumes fused or
    sequentially from each class's last.pt. The numbers are those of the sequential path (tests/test_training.py
    checks weights and metrics), because each class keeps its own generator (batch order, augmentation), seeded
    initialization, optimizer hyperparameters and lr schedule. The one difference: with
    ``train.attack_random_start`` the random starts of all K models come from the first class's generator.

    Falls back to :func:`train_binary` per class (and says so) when fewer than two classes are left or the
    classes stand at different epochs (e.g. one was resumed sequentially)."""
    wanted = list(profile.train.classes if classes is None else classes)
    classes = [k for k in wanted if binary_result(profile, k) is None]
    device = torch.device(device) if device else default_device()
    if not classes:
        return [binary_result(profile, k) for k in wanted]
    data = data or prepare_data(profile.data, progress=progress)

    def sequentially(why: str):
        tqdm.write(f"training d_k one after another: {why}")
        for k in classes:
            train_binary(profile, k, data, device=device, progress=progress)
        return [binary_result(profile, k) for k in wanted]

    if len(classes) < 2:
        return sequentially("fewer than two classes left to train")
    engine = _engine(profile, device)
    x_train = _train_images(data, engine, device)  # uploaded once for all K classes
    runs = [_open_binary_run(profile, k, data, device, False, engine, x_train) for k in classes]
    if len({r.start_epoch for r in runs}) > 1 or len({r.steps_per_epoch for r in runs}) > 1:
        return sequentially("the classes stand at different epochs or have different epoch lengths")
    fit(runs, BinaryStepper(runs, profile.train, device, engine), data_source=data.source, device=device,
        desc=f"d_k x {len(runs)} (fused)", progress=progress, engine=engine)
    return [binary_result(profile, k) for k in wanted]
