"""One training loop for every objective: binary d_k (Eq. 3 / Eq. 9) and the softmax PGD-AT baseline.

A run is keyed by a hash of its config (``runs/<kind>/<hash>/``) and holds:
  config.json     the run config (data, model, training, class k)
  last.pt         model + optimizer + scheduler + RNG state after the last completed epoch (resume point)
  best.pt         the selected model (checkpoint format of genrobust.store)
  metrics.jsonl   one line per epoch: loss, train accuracy, clean/adversarial selection metrics, lr, images/s
  result.json     written last, atomically: its presence means "finished" (train-if-missing reuses the run)

:func:`fit` steps a list of :class:`TrainingRun` records (one model's training state each) through a
:class:`Stepper` (``genrobust.training.steppers``: the K d_k as one network, K = 1 the per-class path, or the softmax
model), whose ``step`` is the whole training step (attack, loss, backward, update); the epochs, resume, the NaN
guard, the metric sums, selection and checkpoints are here, once. A run killed at any moment (even ``kill -9``) and
started again with the same config resumes after its last completed epoch: it loses at most the epoch in progress. A
NaN/inf loss stops the run with ``TrainingDiverged`` and leaves last.pt (the last good epoch) in place.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence

import torch
from tqdm.auto import tqdm

from ..core.models import count_parameters, create_model
from ..data.batches import to_float
from ..data.splits import Prepared, subset_per_class
from ..store.checkpoints import save_checkpoint
from ..store.io import append_jsonl, load_torch, read_json, read_jsonl, save_torch, write_json
from ..store.provenance import provenance


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------------------------------
# Engine settings: how a step runs on its device (genrobust.core.config.EngineConfig; never part of a run key)
@dataclass(frozen=True)
class Engine:
    """The resolved engine settings of one training run on one device."""
    autocast: torch.dtype | None  # bf16 autocast of the step (CUDA only): weights, BN statistics, loss, PGD stay fp32
    cudnn_benchmark: bool  # cuDNN autotuning (CUDA only)
    data_on_device: bool  # training set uploaded once, sampling and crop/flip on the device (DeviceBinaryBatches)


# What 'auto' means per device kind: the one place these choices are written.
# path (train_path=auto; fused.PATH_RULE reads it): from benchmarks/bench_fused.py (K = 10, batch 128 each, PGD-2):
# on the 2-vCPU AMD EPYC (AVX2, torch 2.14.1 CPU, 1 thread, machine shared with training jobs) the fused path ran at
# 0.53x (width 0.5: 8.7 vs 16.3 img/s) and 0.41x (width 0.125: 106 vs 259 img/s) of the sequential images/s -- on
# CPU the grouped convolutions are no faster than K separate ones, and vmap's layout copies and its batch-norm rule
# add ~40% (torch.profiler); the new engine, 2026-12-05, Intel Xeon: fused / sequential 0.75x end to end. On CUDA
# the K small per-model kernels of a width-0.5 ResNet18 at batch 64-128 leave the GPU mostly idle and the fused
# kernels are K times larger. Measured on one H100 (torch 2.11, 2026-11-26; logs in benchmarks/logs/h100-2026-11-26):
# fused 2.50x sequential for the paper's step (width 0.5, PGD-10), 2.24x with PGD-2, 3.89x at width 0.125, and
# 2.41x end to end (bench_epoch.py: the training loops with their data pipeline).
# CUDA also: cuDNN autotuning and the data on the device (they remove the per-step host copies and syncs of the CPU
# pipeline, 7% of the old fused step on an H200); bf16 autocast stays off until it is measured on the fused step
# (docs/performance.md: on the per-model Eq. 3 step bf16 ran at 0.87x fp32 on an H100; issue 24's H200 reference:
# 1.11x for grouped convolutions, channels-last): benchmarks/gpu_engine_check.sh measures it, and
# engine.autocast='bf16' asks for it. CPU: all off, so the CPU keeps its exact random stream and numbers.
ENGINE_RULE = {
    "cpu": {"path": "sequential", "autocast": False, "cudnn_benchmark": False, "data_on_device": False},
    "cuda": {"path": "fused", "autocast": False, "cudnn_benchmark": True, "data_on_device": True},
}


def engine_for(cfg, device) -> Engine:
    """``cfg`` (an EngineConfig, or None for all 'auto') resolved for ``device``: 'auto' follows ENGINE_RULE;
    autocast and cuDNN autotuning apply on CUDA only; data_on_device='on' also runs on the CPU (tests)."""
    device = torch.device(device)
    rule = ENGINE_RULE.get(device.type, {})

    def pick(name: str) -> bool:
        value = "auto" if cfg is None else getattr(cfg, name)
        return rule.get(name, False) if value == "auto" else value in ("on", "bf16")
    cuda = device.type == "cuda"
    return Engine(autocast=torch.bfloat16 if cuda and pick("autocast") else None,
                  cudnn_benchmark=cuda and pick("cudnn_benchmark"), data_on_device=pick("data_on_device"))


@contextlib.contextmanager
def cudnn_benchmark(on: bool):
    """torch.backends.cudnn.benchmark set for the duration, restored after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate schedules: the lr of a run is a function of its optimizer step (TrainingRun.lr); the stepper's
# optimizer takes it before each update
def lr_factor(schedule: str, step: int, total_steps: int, steps_per_epoch: int, drop_epoch, drop_ratio) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based).
    step: base lr, then base * drop_ratio after ``drop_epoch`` epochs (the paper: 0.1 -> 0.01 after epoch 1500);
    onecycle: linear warm-up over the first 20% of steps to the base lr, then linear decay to 0;
    cosine: half-cosine from the base lr to 0."""
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return drop_ratio if drop_epoch is not None and step >= drop_epoch * steps_per_epoch else 1.0
    t = min(step / max(1, total_steps), 1.0)
    if schedule == "onecycle":
        return t / 0.2 if t < 0.2 else max(0.0, (1 - t) / 0.8)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown lr_schedule {schedule!r}")


def scheduled_lr(cfg, base_lr: float, step: int, epochs: int, steps_per_epoch: int) -> float:
    """The lr of optimizer step ``step`` (0-based) of a run with base lr ``base_lr`` (cfg.lr_for(k) for d_k):
    base_lr * :func:`lr_factor`, the step schedule dropping to cfg.lr_drop_to (the number torch's LambdaLR over
    lr_factor gives, as the same product)."""
    drop_ratio = cfg.lr_drop_to / base_lr if base_lr > 0 else 1.0
    return base_lr * lr_factor(cfg.lr_schedule, step, epochs * steps_per_epoch, steps_per_epoch, cfg.lr_drop_epoch,
                               drop_ratio)


def scheduler_state(run: "TrainingRun") -> dict:
    """The schedule's position in last.pt, in the format torch's LambdaLR writes (the format of every last.pt so far,
    so older files resume and these resume in older code): ``last_epoch`` is the run's optimizer steps taken."""
    return {"base_lrs": [run.base_lr], "last_epoch": run.step, "_step_count": run.step + 1, "_is_initial": False,
            "_get_lr_called_within_step": False, "_last_lr": [run.lr], "lr_lambdas": [None]}


# ---------------------------------------------------------------------------------------------------------------
# The loop
def to_device(x_uint8, device, channels_last):
    x = to_float(x_uint8, device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@dataclass(frozen=True)
class BestCheckpoint:
    """What a run's best.pt says it holds (:func:`genrobust.store.checkpoints.save_checkpoint`)."""
    kind: str  # 'binary' (a d_k) or 'softmax'
    config: dict  # what rebuilds the model: name, width, num_outputs (and k for a d_k)


@dataclass(frozen=True)
class Selection:
    """How a run's best epoch is chosen: ``metrics(model) -> {metric: value}`` on the selection split (None: no
    selection split), and ``key``, the metric whose highest value is kept (None: the last epoch is the best)."""
    metrics: Callable | None = None
    key: str | None = None


@dataclass
class TrainingRun:
    """One model's training state, the typed record :func:`fit` steps (one per d_k, or the softmax model): its run
    directory, model, generator, batches and lr schedule, and how far it has come.

    ``model`` and ``generator`` are the run's own; the stepper builds the optimizer that steps the model (one for
    several runs where it steps them as one network) and writes the run's state back with ``sync``: the weights
    into ``model``, the momentum buffers into ``optimizer_state`` (torch.optim.SGD's state_dict format, as last.pt
    holds it; None before the first step), and counts ``step``, the optimizer steps taken, which sets ``lr``.
    ``make_batches(generator)`` yields one epoch (``steps_per_epoch`` batches) of this run's batches (uint8 images
    drawn from ``generator``; a d_k's also augmented there). ``best``/``best_epoch``: the selection so far (last.pt
    keeps them). Built directly, then :func:`open_run` gives it its directory and resumes it."""
    run_dir: Path
    run_config: dict
    label: str  # names the run in messages: 'd_3 (cat)', 'softmax resnet50'
    model: torch.nn.Module
    generator: torch.Generator
    make_batches: Callable[[torch.Generator], Iterable]
    steps_per_epoch: int
    cfg: object  # the TrainConfig / SoftmaxConfig: momentum, weight decay, the lr schedule, the seed
    base_lr: float
    epochs: int
    checkpoint: BestCheckpoint
    selection: Selection = Selection()
    step: int = 0  # optimizer steps taken (resumed from last.pt)
    optimizer_state: dict | None = None
    start_epoch: int = 0  # the first epoch to run (after resume)
    best: float = -math.inf
    best_epoch: int = -1

    @property
    def lr(self) -> float:
        """The lr of the run's next optimizer step (:func:`scheduled_lr`)."""
        return scheduled_lr(self.cfg, self.base_lr, self.step, self.epochs, self.steps_per_epoch)


def open_run(run: TrainingRun, *, device, channels_last: bool) -> TrainingRun:
    """``run`` given its directory and config.json, its model placed on ``device`` (in the channels-last memory
    format if asked), and resumed from last.pt when one is there (:func:`resume`). Returns ``run``."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.run_dir / "config.json", run.run_config)
    run.model.to(device)
    if channels_last:
        run.model.to(memory_format=torch.channels_last)
    resume(run.run_dir / "last.pt", run)
    return run


class Stepper(Protocol):
    """What :func:`fit` steps: the models of its runs, one network (``genrobust.training.steppers``)."""
    result_extra: dict  # added to every run's result.json (e.g. {'path': 'fused (10 models)'})

    def train(self) -> None:
        """Train mode, before each epoch (selection left the models in eval mode)."""

    def step(self, batches: Sequence, *, check_now: bool) -> tuple[torch.Tensor, dict, int]:
        """One training step of every run, one batch each: attack, loss, backward, update. Returns (nonfinite (K,)
        bool on the device: whose loss was NaN/inf, stats {name: (K,)} detached, images in the step); with
        ``check_now`` the flags are read at once and a non-finite loss returns before the update."""

    def sync(self) -> None:
        """Write the stepped state into each run's model and optimizer state (before its checkpoints)."""

    def select(self) -> list[dict | None]:
        """Each run's selection metrics on its current weights (after :meth:`sync`), in run order; None for a run
        without selection (the K d_k stepped together: all K in one pass over their network)."""


def fit(runs: Sequence[TrainingRun], stepper: Stepper, *, data_source: dict, device, desc: str,
        progress: bool = True, engine: Engine | None = None) -> list[dict]:
    """Train ``runs`` with ``stepper`` to their ``epochs``: the one training loop. The runs stand at one epoch, with
    one epoch length, one number of epochs and one selection interval (``select_every``).

    Per step: one batch from each run's ``make_batches`` into ``stepper.step`` (the whole step), the NaN guard; the
    per-run statistics are summed on the device (float64: the numbers of a per-step float() sum) and read once per
    epoch. On a CUDA device the NaN flag is read once per epoch too (no host sync inside a step:
    tests/test_engine.py checks it): a non-finite loss stops the run at the end of its epoch, before any checkpoint
    of it; elsewhere the step reads it and stops before its update. After each epoch, per
    run: selection (``stepper.select``: the K d_k in one pass), best.pt, the metrics line and last.pt
    (:func:`end_epoch`). ``engine`` (default: engine_for
    the device): cuDNN autotuning for the duration. Returns each run's result.json.
    """
    engine = engine or engine_for(None, device)
    with cudnn_benchmark(engine.cudnn_benchmark):
        return _fit(runs, stepper, data_source=data_source, device=device, desc=desc, progress=progress)


def _fit(runs, stepper, *, data_source, device, desc, progress):
    runs = list(runs)
    start, steps_per_epoch, epochs, select_every = _shared(runs, desc)
    n_runs = len(runs)
    device = torch.device(device)
    sync_every_step = device.type != "cuda"  # a host read costs nothing on the CPU and names the step
    t_start = time.time()
    bar = tqdm(range(start, epochs), desc=desc, initial=start, total=epochs, disable=not progress, unit="epoch")
    for epoch in bar:
        stepper.train()
        t0, n_img, sums = time.time(), 0, {}
        nonfinite = torch.zeros(n_runs, dtype=torch.bool, device=device)
        iters = [iter(r.make_batches(r.generator)) for r in runs]
        for step in tqdm(range(steps_per_epoch), leave=False, disable=not progress, unit="batch",
                         desc=f"epoch {epoch + 1}"):
            bad, stats, n = stepper.step([next(it) for it in iters], check_now=sync_every_step)
            if sync_every_step and bad.any():
                raise _diverged(desc, runs, bad, epoch, f"step {step + 1}")
            nonfinite |= bad
            add_stats(sums, stats)
            n_img += n
        if nonfinite.any():  # the one read of the flag per epoch (CUDA)
            raise _diverged(desc, runs, nonfinite, epoch, "a step")
        train_time = time.time() - t0
        stepper.sync()
        means = {key: (v / max(1, steps_per_epoch)).tolist() for key, v in sums.items()}  # one read per epoch
        selecting = _selects(epoch, epochs, select_every)
        selected = stepper.select() if selecting else [None] * n_runs
        for i, r in enumerate(runs):
            rec = {"epoch": epoch + 1, "lr": r.lr, "train_time_s": round(train_time, 2),
                   "images_per_s": round(n_img / n_runs / max(train_time, 1e-9), 1)}
            if n_runs > 1:
                rec.update({"fused_models": n_runs, "fused_images_per_s": round(n_img / max(train_time, 1e-9), 1)})
            rec.update({f"train_{key}": v[i] for key, v in means.items()})
            end_epoch(r, rec, epoch=epoch, selected=selected[i])
            if n_runs == 1:
                bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items()
                                 if k.startswith(("train_loss", "adv_auroc", "val"))})
    return [finish(r, data_source=data_source, device=device, wall_time_s=time.time() - t_start,
                   **stepper.result_extra) for r in runs]


# What the runs of one fit share: they step together, epoch by epoch
_SHARED = {"epochs": lambda r: r.start_epoch, "epoch lengths": lambda r: r.steps_per_epoch,
           "numbers of epochs": lambda r: r.epochs, "selection intervals": lambda r: getattr(r.cfg, "select_every", 1)}


def _shared(runs: Sequence[TrainingRun], desc: str) -> tuple:
    """(first epoch, epoch length, number of epochs, select_every) of ``runs``, one value each; ValueError naming
    those that differ."""
    values = {name: sorted({of(r) for r in runs}) for name, of in _SHARED.items()}
    differ = [f"{name} {v}" for name, v in values.items() if len(v) != 1]
    if differ:
        raise ValueError(f"{desc}: fit steps runs that stand at one epoch with one epoch length, one number of "
                         f"epochs and one selection interval; got {', '.join(differ)}")
    return tuple(v[0] for v in values.values())


def add_stats(sums: dict, stats: dict) -> None:
    """Add one step's per-run statistics {name: (K,)} to ``sums``, in float64 on their device (no host read)."""
    for key, v in stats.items():
        sums[key] = sums[key] + v.double() if key in sums else v.double()


def _diverged(desc: str, runs: Sequence[TrainingRun], bad: torch.Tensor, epoch: int, where: str) -> TrainingDiverged:
    names = [r.label for r, b in zip(runs, bad.tolist()) if b]
    kept = f"last.pt of epoch {epoch}" if epoch > 0 else "no checkpoint yet"
    whose = "loss" if len(runs) == 1 else f"loss of {', '.join(names)}"
    return TrainingDiverged(
        f"{desc}: {whose} became non-finite at epoch {epoch + 1}, {where}; the last good "
        f"checkpoint ({kept}) is kept in {runs[0].run_dir if len(runs) == 1 else 'each run directory'}; lower the "
        f"learning rate (train.lr) and run again")


def resume(last: Path, run: TrainingRun) -> None:
    """Load the resume point ``last`` (last.pt, written by :func:`end_epoch`) into ``run``: its model, generator,
    optimizer state, optimizer steps taken (the schedule's ``last_epoch``), first epoch and selection so far.
    Without the file the run stays at its start."""
    if not last.exists():
        return
    st = load_torch(last)
    run.model.load_state_dict(st["model"])
    run.generator.set_state(st["generator"])
    run.optimizer_state, run.step = st["optimizer"], st["scheduler"]["last_epoch"]
    run.start_epoch, run.best, run.best_epoch = st["epoch"] + 1, st["best"], st["best_epoch"]


def _selects(epoch: int, epochs: int, every: int) -> bool:
    """Whether 0-based ``epoch`` is a selection epoch: every ``every`` epochs and always the last one."""
    return (epoch + 1) % every == 0 or epoch + 1 == epochs


def end_epoch(run: TrainingRun, rec: dict, *, epoch: int, selected: dict | None) -> None:
    """After the training steps of ``epoch`` (0-based), for one run: its selection metrics ``selected`` (None when
    the epoch selects nothing; :func:`fit` asks the stepper every cfg.select_every epochs and the last) into the
    metrics line, best.pt if improved (run.best, run.best_epoch updated), the metrics line, then last.pt (the
    resume point, written after best.pt and the metrics line so that both are consistent with it)."""
    if selected is not None:
        rec.update(selected)
    key = run.selection.key
    if key is None or (selected is not None and rec.get(key, -math.inf) >= run.best):
        run.best, run.best_epoch = (rec[key] if key else run.best), epoch + 1
        save_checkpoint(run.run_dir / "best.pt", kind=run.checkpoint.kind, state={"model": _cpu_state(run.model)},
                        config=run.checkpoint.config, epoch=epoch + 1, run_config=run.run_config)
    append_jsonl(run.run_dir / "metrics.jsonl", rec)
    save_torch(run.run_dir / "last.pt", {"model": run.model.state_dict(), "optimizer": run.optimizer_state,
                                         "scheduler": scheduler_state(run), "generator": run.generator.get_state(),
                                         "epoch": epoch, "best": run.best, "best_epoch": run.best_epoch})


def finish(run: TrainingRun, *, data_source, device, wall_time_s: float, **extra) -> dict:
    """result.json (written last, atomically: the run is finished) and its content as a later call reads it."""
    key = run.selection.key
    result = {"best_epoch": run.best_epoch, "best_metric": None if key is None else run.best,
              "select_key": key, "epochs": run.epochs, "metrics": read_jsonl(run.run_dir / "metrics.jsonl"),
              "checkpoint": str(run.run_dir / "best.pt"), "parameters": count_parameters(run.model), **extra,
              "provenance": provenance(run.run_config, data_source=data_source, seed=run.cfg.seed,
                                       wall_time_s=round(wall_time_s, 1), device=device)}
    write_json(run.run_dir / "result.json", result)
    return read_json(run.run_dir / "result.json")  # the same object that a later train-if-missing call returns


def _cpu_state(model):
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone() for k, v in model.state_dict().items()}


def select_split(data: Prepared, select_on: str, n: int | None, seed: int):
    """The split used for selection metrics, subsampled to n per class for speed (None: all)."""
    split = data.selection_split(select_on) if select_on != "last" else (
        data.selection_split("val") if len(data.val_y) else None)
    if split is None:
        return None
    x, y = split
    if n is not None:
        smallest = int(torch.bincount(y).min())
        idx = subset_per_class(y, min(n, smallest), seed)
        x, y = x[idx], y[idx]
    return x, y


def seeded_model(name: str, num_outputs: int, width: float, seed: int) -> torch.nn.Module:
    """create_model with weights drawn from ``seed`` (not the global RNG), so a run's initialization is a
    function of its config: two runs with the same config start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, num_outputs, width)
