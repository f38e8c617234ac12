"""One training loop for every objective: binary d_k (Eq. 3 / Eq. 9) and the softmax PGD-AT baseline.

A run is keyed by a hash of its config (``runs/<kind>/<hash>/``) and holds:
  config.json     the run config (data, model, training, class k)
  last.pt         model + optimizer + scheduler + RNG state after the last completed epoch (resume point)
  best.pt         the selected model (checkpoint format of genrobust.results)
  metrics.jsonl   one line per epoch: loss, train accuracy, clean/adversarial selection metrics, lr, images/s
  result.json     written last, atomically: its presence means "finished" (train-if-missing reuses the run)

A run killed at any moment (even ``kill -9``) and started again with the same config resumes after its last
completed epoch: it loses at most the epoch in progress. A NaN/inf loss stops the run with ``TrainingDiverged`` and
leaves last.pt (the last good epoch) in place.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data as gdata
from .attacks import eval_mode, pgd_untargeted
from .config import DataConfig, Profile, TrainConfig, config_hash, to_dict
from .evaluate import binary_auroc
from .models import create_model, count_parameters
from .objectives import BINARY_OBJECTIVES, softmax_pgd_at_loss
from .results import (append_jsonl, load_torch, provenance, read_json, read_jsonl, runs_dir, save_checkpoint,
                      save_torch, write_json)


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------------------------------
# Data for training runs
@dataclass(frozen=True)
class Prepared:
    """Splits as uint8 (N, 3, 32, 32) + int64 labels, after the seeded validation split and subsets."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: dict          # genrobust.data provenance record (name, path, sha256, synthetic)
    split: dict           # how val/subsets were drawn (seed, sizes)

    def selection_split(self, select_on: str):
        if select_on == "test":
            return self.test_x, self.test_y
        if select_on == "val":
            if len(self.val_y) == 0:
                raise ValueError("select_on='val' needs data.val_per_class > 0; set it or use select_on='test'")
            return self.val_x, self.val_y
        return None


def prepare_data(dcfg: DataConfig, *, progress: bool = True) -> Prepared:
    splits = gdata.load(dcfg.source, dcfg.path, synthetic_train_per_class=dcfg.synthetic_train_per_class,
                        synthetic_test_per_class=dcfg.synthetic_test_per_class, seed=dcfg.seed, progress=progress)
    tr_idx, va_idx = gdata.stratified_split(splits.train_y, dcfg.val_per_class, dcfg.seed)
    if dcfg.train_per_class is not None:
        keep = gdata.subset_per_class(splits.train_y[tr_idx], dcfg.train_per_class, dcfg.seed)
        tr_idx = tr_idx[keep]
    te_idx = gdata.subset_per_class(splits.test_y, dcfg.test_per_class, dcfg.seed)
    split = {"seed": dcfg.seed, "val_per_class": dcfg.val_per_class, "train_per_class": dcfg.train_per_class,
             "test_per_class": dcfg.test_per_class, "n_train": len(tr_idx), "n_val": len(va_idx),
             "n_test": len(te_idx)}
    return Prepared(splits.train_x[tr_idx], splits.train_y[tr_idx], splits.train_x[va_idx], splits.train_y[va_idx],
                    splits.test_x[te_idx], splits.test_y[te_idx], splits.source.describe(), split)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedules
def make_optimizer(model, lr: float, momentum: float, weight_decay: float):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


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


def make_scheduler(opt, cfg, epochs: int, steps_per_epoch: int, base_lr: float):
    drop_ratio = cfg.lr_drop_to / base_lr if base_lr > 0 else 1.0
    total = epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(cfg.lr_schedule, s, total, steps_per_epoch, cfg.lr_drop_epoch, drop_ratio))


# ---------------------------------------------------------------------------------------------------------------
# The loop
def _to_device(x_uint8, device, channels_last):
    x = gdata.to_float(x_uint8, device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def fit(run_dir: Path, *, model, cfg, lr: float, epochs: int, make_batches: Callable[[torch.Generator], Iterable],
        steps_per_epoch: int, step_loss: Callable, select_metrics: Callable | None, select_key: str | None,
        ckpt_kind: str, ckpt_config: dict, run_config: dict, data_source: dict, device, desc: str,
        progress: bool = True) -> dict:
    """Train ``model`` for ``epochs`` with resume, per-epoch checkpoints, metrics log, NaN guard and selection.

    make_batches(generator) yields one epoch of batches; step_loss(model, batch, generator) -> (loss, stats);
    select_metrics(model) -> dict of metrics (higher select_key = better) or None to keep the last epoch.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", run_config)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, lr, cfg.momentum, cfg.weight_decay)
    sched = make_scheduler(opt, cfg, epochs, steps_per_epoch, lr)
    g = torch.Generator().manual_seed(cfg.seed)
    start_epoch, best, best_epoch = 0, -math.inf, -1
    last = run_dir / "last.pt"
    if last.exists():  # resume after the last completed epoch
        st = load_torch(last)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        g.set_state(st["generator"])
        start_epoch, best, best_epoch = st["epoch"] + 1, st["best"], st["best_epoch"]
    t_start = time.time()
    bar = tqdm(range(start_epoch, epochs), desc=desc, initial=start_epoch, total=epochs, disable=not progress,
               unit="epoch")
    for epoch in bar:
        model.train()
        t0, n_img, sums = time.time(), 0, {}
        inner = tqdm(make_batches(g), total=steps_per_epoch, leave=False, disable=not progress, unit="batch",
                     desc=f"epoch {epoch + 1}")
        for step, batch in enumerate(inner):
            loss, stats = step_loss(model, batch, g)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"{desc}: loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; the last good "
                    f"checkpoint ({last.name}, epoch {start_epoch if not last.exists() else epoch}) is kept in "
                    f"{run_dir}; lower the learning rate (train.lr) and run again")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n_img += sum(len(b) for b in batch if b.dtype == torch.uint8)
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + float(v)
        train_time = time.time() - t0
        rec = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_time_s": round(train_time, 2),
               "images_per_s": round(n_img / max(train_time, 1e-9), 1)}
        rec.update({f"train_{k}": v / max(1, steps_per_epoch) for k, v in sums.items()})
        if select_metrics is not None:
            model.eval()
            rec.update(select_metrics(model))
        improved = select_key is None or rec.get(select_key, -math.inf) >= best
        if improved:
            best, best_epoch = (rec[select_key] if select_key else best), epoch + 1
            save_checkpoint(run_dir / "best.pt", kind=ckpt_kind, state={"model": _cpu_state(model)},
                            config=ckpt_config, epoch=epoch + 1, run_config=run_config)
        append_jsonl(run_dir / "metrics.jsonl", rec)
        # last.pt is the resume point: written after best.pt and the metrics line, so both are consistent with it
        save_torch(last, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "generator": g.get_state(), "epoch": epoch, "best": best, "best_epoch": best_epoch})
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k.startswith(("train_loss", "adv_auroc", "val"))})
    result = {"best_epoch": best_epoch, "best_metric": None if select_key is None else best,
              "select_key": select_key, "epochs": epochs, "metrics": read_jsonl(run_dir / "metrics.jsonl"),
              "checkpoint": str(run_dir / "best.pt"), "parameters": count_parameters(model),
              "provenance": provenance(run_config, data_source=data_source, seed=cfg.seed,
                                       wall_time_s=round(time.time() - t_start, 1), device=device)}
    write_json(run_dir / "result.json", result)
    return read_json(run_dir / "result.json")  # the same object that a later train-if-missing call returns


def _cpu_state(model):
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------
# Binary models d_k
def binary_run_config(profile: Profile, k: int) -> dict:
    t = dataclasses.replace(profile.train, classes=(k,))
    return {"kind": "binary", "k": k, "lr": t.lr_for(k), "data": to_dict(profile.data),
            "model": to_dict(profile.model), "train": to_dict(t)}


def run_dir_for(run_config: dict) -> Path:
    return runs_dir() / run_config["kind"] / config_hash(run_config)


def binary_result(profile: Profile, k: int) -> dict | None:
    """The finished run of class k under this profile, or None."""
    path = run_dir_for(binary_run_config(profile, k)) / "result.json"
    return read_json(path) if path.exists() else None


def _select_split(data: Prepared, select_on: str, n: int | None, seed: int):
    """The split used for selection metrics, subsampled to n per class for speed (None: all)."""
    split = data.selection_split(select_on) if select_on != "last" else (
        data.selection_split("val") if len(data.val_y) else None)
    if split is None:
        return None
    x, y = split
    if n is not None:
        smallest = int(torch.bincount(y).min())
        idx = gdata.subset_per_class(y, min(n, smallest), seed)
        x, y = x[idx], y[idx]
    return x, y


def _seeded_model(name: str, num_outputs: int, width: float, seed: int) -> torch.nn.Module:
    """create_model with weights drawn from ``seed`` (not the global RNG), so a run's initialization is a
    function of its config: two runs with the same config start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, num_outputs, width)


def train_binary(profile: Profile, k: int, data: Prepared | None = None, *, device=None, progress=True) -> dict:
    """Train d_k (train-if-missing). Returns the run's result.json content."""
    run_config = binary_run_config(profile, k)
    run_dir = run_dir_for(run_config)
    if (run_dir / "result.json").exists():
        return read_json(run_dir / "result.json")
    device = torch.device(device) if device else default_device()
    data = data or prepare_data(profile.data, progress=progress)
    cfg: TrainConfig = profile.train
    model = _seeded_model(profile.model.name, 1, profile.model.width, cfg.seed * 1000 + k)
    objective = BINARY_OBJECTIVES[cfg.objective]
    batches = lambda g: gdata.BinaryBatches(data.train_x, data.train_y, k, cfg.batch_size, generator=g)  # noqa: E731
    steps_per_epoch = len(batches(torch.Generator()))
    if steps_per_epoch == 0:
        raise ValueError(f"class {k} has too few training images for batch size {cfg.batch_size}; "
                         "lower train.batch_size or raise data.train_per_class")

    def step_loss(model, batch, g):
        x_pos, x_neg = (_to_device(gdata.augment(b, cfg.augment, g), device, cfg.channels_last) for b in batch)
        return objective(model, x_pos, x_neg, cfg, g)

    sel = _select_split(data, cfg.select_on, cfg.select_n, cfg.seed)
    select_metrics = None
    if sel is not None:
        x, y = sel
        pos = gdata.to_float(x[y == k])
        neg_idx = (y != k).nonzero(as_tuple=True)[0]
        # as many negatives as positives, drawn evenly from the other classes (seeded)
        gen = torch.Generator().manual_seed(cfg.seed)
        neg = gdata.to_float(x[neg_idx[torch.randperm(len(neg_idx), generator=gen)[:len(pos)]]])
        split_name = cfg.select_on if cfg.select_on != "last" else "val"

        def select_metrics(model):
            res = binary_auroc(model, pos, neg, (0.0, cfg.eps), steps=cfg.select_attack_steps, device=device,
                               seed=cfg.seed)
            return {f"{split_name}_clean_auroc": res[0.0], f"{split_name}_adv_auroc": res[cfg.eps]}
        select_key = None if cfg.select_on == "last" else f"{split_name}_adv_auroc"
    else:
        select_key = None
    from .data import CLASSES
    return fit(run_dir, model=model, cfg=cfg, lr=cfg.lr_for(k), epochs=cfg.epochs, make_batches=batches,
               steps_per_epoch=steps_per_epoch, step_loss=step_loss, select_metrics=select_metrics,
               select_key=select_key, ckpt_kind="binary",
               ckpt_config={**to_dict(profile.model), "k": k, "num_outputs": 1}, run_config=run_config,
               data_source=data.source, device=device, desc=f"d_{k} ({CLASSES[k]})", progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# Softmax PGD-AT baseline
def softmax_run_config(profile: Profile) -> dict:
    return {"kind": "softmax", "data": to_dict(profile.data), "softmax": to_dict(profile.softmax)}


def softmax_result(profile: Profile) -> dict | None:
    path = run_dir_for(softmax_run_config(profile)) / "result.json"
    return read_json(path) if path.exists() else None


def _class_batches(x, y, batch_size, g):
    perm = torch.randperm(len(y), generator=g)
    for i in range(0, len(perm) - batch_size + 1, batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]


def robustness_state_dict(path) -> tuple[dict, dict]:
    """Map a MadryLab `robustness` CIFAR-10 checkpoint (e.g. the published L2 eps 0.5 ResNet50) to our ResNet50.

    Their file holds {'model': state dict of an AttackerModel, ...} with keys 'module.model.<layer>' (the
    classifier), 'module.attacker.model.<layer>' (a copy) and 'module.normalizer.new_mean/new_std'. Their CIFAR
    ResNet uses the same layer names as ours (conv1, bn1, layer1-4 of Bottleneck blocks with `shortcut`, linear).
    Returns (state dict for create_model('resnet50', 10), {'mean': [...], 'std': [...]}) — their normalization
    constants, which differ slightly from ours and must be kept."""
    ckpt = load_torch(path)
    sd = ckpt.get("model", ckpt.get("state_dict", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: not a robustness-library checkpoint (no 'model' state dict)")
    prefix = next((p for p in ("module.model.", "model.") if any(k.startswith(p) for k in sd)), None)
    if prefix is None:
        raise ValueError(f"{path}: no 'module.model.*' keys; expected a robustness-library CIFAR checkpoint")
    state = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    norm = {}
    for name in ("mean", "std"):
        t = sd.get(f"module.normalizer.new_{name}", sd.get(f"normalizer.new_{name}"))
        if t is None:
            raise ValueError(f"{path}: missing normalizer.new_{name}; is this a robustness-library checkpoint?")
        norm[name] = t.reshape(-1).tolist()
    return state, norm


def import_robustness_checkpoint(path, run_dir: Path, run_config: dict, data_source=None) -> dict:
    """Convert a robustness-library ResNet50 file into our checkpoint format (loadable by load_classifier)."""
    state, norm = robustness_state_dict(path)
    model = create_model("resnet50", 10, 1.0)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: state dict does not match our ResNet50 (missing {missing[:3]}..., unexpected "
                         f"{unexpected[:3]}...); only CIFAR-10 ResNet50 robustness checkpoints are supported")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / "best.pt", kind="softmax", state={"model": model.state_dict()},
                    config={"name": "resnet50", "width": 1.0, "num_outputs": 10, "normalize": norm},
                    imported_from=str(path))
    result = {"best_epoch": None, "best_metric": None, "select_key": None, "epochs": 0, "metrics": [],
              "checkpoint": str(run_dir / "best.pt"), "parameters": count_parameters(model),
              "imported_from": str(path),
              "provenance": provenance(run_config, data_source=data_source, wall_time_s=0.0)}
    write_json(run_dir / "result.json", result)
    return read_json(run_dir / "result.json")


def train_softmax(profile: Profile, data: Prepared | None = None, *, device=None, progress=True) -> dict:
    """Madry PGD-AT softmax baseline (train-if-missing), or the import of a published robustness-library
    checkpoint when ``softmax.checkpoint`` is set."""
    cfg = profile.softmax
    run_config = softmax_run_config(profile)
    run_dir = run_dir_for(run_config)
    if (run_dir / "result.json").exists():
        return read_json(run_dir / "result.json")
    if cfg.checkpoint:
        return import_robustness_checkpoint(cfg.checkpoint, run_dir, run_config)
    device = torch.device(device) if device else default_device()
    data = data or prepare_data(profile.data, progress=progress)
    model = _seeded_model(cfg.model, 10, cfg.width, cfg.seed)
    steps_per_epoch = len(data.train_y) // cfg.batch_size

    def step_loss(model, batch, g):
        x, y = batch
        x = _to_device(gdata.augment(x, cfg.augment, g), device, cfg.channels_last)
        return softmax_pgd_at_loss(model, x, y.to(device), cfg, g)

    sel = _select_split(data, cfg.select_on, 50, cfg.seed)
    select_metrics, select_key = None, None
    if sel is not None:
        x, y = gdata.to_float(sel[0]).to(device), sel[1].to(device)
        split_name = cfg.select_on if cfg.select_on != "last" else "val"

        def select_metrics(model):
            with torch.no_grad():
                clean = (model(x).argmax(1) == y).float().mean().item()
            with eval_mode(model):
                xa = pgd_untargeted(model, x, y, eps=cfg.eps, norm="l2", steps=5,
                                    generator=torch.Generator().manual_seed(cfg.seed))
            with torch.no_grad():
                rob = (model(xa).argmax(1) == y).float().mean().item()
            return {f"{split_name}_clean_acc": clean, f"{split_name}_robust_acc": rob}
        select_key = None if cfg.select_on == "last" else f"{split_name}_robust_acc"
    return fit(run_dir, model=model, cfg=cfg, lr=cfg.lr, epochs=cfg.epochs,
               make_batches=lambda g: _class_batches(data.train_x, data.train_y, cfg.batch_size, g),
               steps_per_epoch=steps_per_epoch, step_loss=step_loss, select_metrics=select_metrics,
               select_key=select_key, ckpt_kind="softmax",
               ckpt_config={"name": cfg.model, "width": cfg.width, "num_outputs": 10}, run_config=run_config,
               data_source=data.source, device=device, desc=f"softmax {cfg.model}", progress=progress)
