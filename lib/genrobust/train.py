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
import warnings
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
    last = run_dir / "last.pt"
    start_epoch, best, best_epoch = _resume(last, model=model, opt=opt, sched=sched, g=g)
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
        best, best_epoch = _end_epoch(run_dir, rec, model=model, opt=opt, sched=sched, g=g, epoch=epoch,
                                      epochs=epochs, cfg=cfg, select_metrics=select_metrics, select_key=select_key,
                                      best=best, best_epoch=best_epoch, ckpt_kind=ckpt_kind, ckpt_config=ckpt_config,
                                      run_config=run_config)
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k.startswith(("train_loss", "adv_auroc", "val"))})
    return _finish(run_dir, model=model, cfg=cfg, epochs=epochs, best=best, best_epoch=best_epoch,
                   select_key=select_key, run_config=run_config, data_source=data_source, device=device,
                   wall_time_s=time.time() - t_start)


def _resume(last: Path, *, model, opt, sched, g) -> tuple[int, float, int]:
    """Load the resume point ``last`` (last.pt, written by :func:`_end_epoch`) into model, optimizer, scheduler
    and generator. Returns (first epoch to run, best selection metric, best epoch); (0, -inf, -1) without it."""
    if not last.exists():
        return 0, -math.inf, -1
    st = load_torch(last)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    g.set_state(st["generator"])
    return st["epoch"] + 1, st["best"], st["best_epoch"]


def _selects(epoch: int, epochs: int, every: int) -> bool:
    """Whether 0-based ``epoch`` is a selection epoch: every ``every`` epochs and always the last one."""
    return (epoch + 1) % every == 0 or epoch + 1 == epochs


def _end_epoch(run_dir: Path, rec: dict, *, model, opt, sched, g, epoch, epochs, cfg, select_metrics, select_key,
               best, best_epoch, ckpt_kind, ckpt_config, run_config):
    """After the training steps of ``epoch`` (0-based): selection metrics (every cfg.select_every epochs and the
    last), best.pt if improved, the metrics line, then last.pt (the resume point, written after best.pt and the
    metrics line so that both are consistent with it). Returns the updated (best, best_epoch)."""
    selecting = select_metrics is not None and _selects(epoch, epochs, getattr(cfg, "select_every", 1))
    if selecting:
        model.eval()
        rec.update(select_metrics(model))
    if select_key is None or (selecting and rec.get(select_key, -math.inf) >= best):
        best, best_epoch = (rec[select_key] if select_key else best), epoch + 1
        save_checkpoint(run_dir / "best.pt", kind=ckpt_kind, state={"model": _cpu_state(model)},
                        config=ckpt_config, epoch=epoch + 1, run_config=run_config)
    append_jsonl(run_dir / "metrics.jsonl", rec)
    save_torch(run_dir / "last.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "generator": g.get_state(), "epoch": epoch,
                                     "best": best, "best_epoch": best_epoch})
    return best, best_epoch


def _finish(run_dir: Path, *, model, cfg, epochs, best, best_epoch, select_key, run_config, data_source, device,
            wall_time_s, **extra) -> dict:
    """result.json (written last, atomically: the run is finished) and its content as a later call reads it."""
    result = {"best_epoch": best_epoch, "best_metric": None if select_key is None else best,
              "select_key": select_key, "epochs": epochs, "metrics": read_jsonl(run_dir / "metrics.jsonl"),
              "checkpoint": str(run_dir / "best.pt"), "parameters": count_parameters(model), **extra,
              "provenance": provenance(run_config, data_source=data_source, seed=cfg.seed,
                                       wall_time_s=round(wall_time_s, 1), device=device)}
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


def _binary_selection(data: Prepared, cfg: TrainConfig, k: int, device):
    """(select_metrics, select_key) of d_k: clean and adversarial AUROC on the selection split (class-k images vs
    as many other-class images, drawn evenly and seeded); (None, None) without a selection split."""
    sel = _select_split(data, cfg.select_on, cfg.select_n, cfg.seed)
    if sel is None:
        return None, None
    x, y = sel
    pos = gdata.to_float(x[y == k])
    neg_idx = (y != k).nonzero(as_tuple=True)[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    neg = gdata.to_float(x[neg_idx[torch.randperm(len(neg_idx), generator=gen)[:len(pos)]]])
    split_name = cfg.select_on if cfg.select_on != "last" else "val"

    def select_metrics(model):
        res = binary_auroc(model, pos, neg, (0.0, cfg.eps), steps=cfg.select_attack_steps, device=device,
                           seed=cfg.seed)
        return {f"{split_name}_clean_auroc": res[0.0], f"{split_name}_adv_auroc": res[cfg.eps]}
    return select_metrics, (None if cfg.select_on == "last" else f"{split_name}_adv_auroc")


def _binary_batches(data: Prepared, cfg: TrainConfig, k: int):
    """(make_batches(g), steps per epoch) of d_k's balanced batches."""
    batches = lambda g: gdata.BinaryBatches(data.train_x, data.train_y, k, cfg.batch_size, generator=g)  # noqa: E731
    steps_per_epoch = len(batches(torch.Generator()))
    if steps_per_epoch == 0:
        raise ValueError(f"class {k} has too few training images for batch size {cfg.batch_size}; "
                         "lower train.batch_size or raise data.train_per_class")
    return batches, steps_per_epoch


def _binary_ckpt_config(profile: Profile, k: int) -> dict:
    return {**to_dict(profile.model), "k": k, "num_outputs": 1}


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
    batches, steps_per_epoch = _binary_batches(data, cfg, k)

    def step_loss(model, batch, g):
        x_pos, x_neg = (_to_device(gdata.augment(b, cfg.augment, g), device, cfg.channels_last) for b in batch)
        return objective(model, x_pos, x_neg, cfg, g)

    select_metrics, select_key = _binary_selection(data, cfg, k, device)
    from .data import CLASSES
    return fit(run_dir, model=model, cfg=cfg, lr=cfg.lr_for(k), epochs=cfg.epochs, make_batches=batches,
               steps_per_epoch=steps_per_epoch, step_loss=step_loss, select_metrics=select_metrics,
               select_key=select_key, ckpt_kind="binary", ckpt_config=_binary_ckpt_config(profile, k),
               run_config=run_config, data_source=data.source, device=device, desc=f"d_{k} ({CLASSES[k]})",
               progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# The K binary models trained together (genrobust.fused): same runs, same files, same numbers
def train_binaries_fused(profile: Profile, classes=None, data: Prepared | None = None, *, device=None,
                         progress: bool = True) -> list[dict]:
    """Train d_k for ``classes`` (default: profile.train.classes) together as one vmapped network
    (:class:`genrobust.fused.FusedBinaryModels`), train-if-missing. Returns each class's result.json content.

    Every class keeps its own run directory, with the files of :func:`train_binary` in the same formats, so the
    two paths are interchangeable, also mid-run: a fused run interrupted after epoch e resumes fused or
    sequentially from each class's last.pt. The numbers are those of the sequential path (tests/test_train.py
    checks weights and metrics), because each class keeps its own generator (batch order, augmentation), seeded
    initialization, optimizer hyperparameters and lr schedule; the K updates are one :class:`FusedSGD` step whose
    per-model learning rates come from each class's own scheduler. The one difference: with
    ``train.attack_random_start`` the random starts of all K models come from the first class's generator.

    Falls back to :func:`train_binary` per class (and says so) when fewer than two classes are left or the
    classes stand at different epochs (e.g. one was resumed sequentially)."""
    from .data import CLASSES
    from .fused import FusedBinaryModels, FusedSGD, fused_train_step
    cfg: TrainConfig = profile.train
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
    runs = []
    for k in classes:
        run_config = binary_run_config(profile, k)
        run_dir = run_dir_for(run_config)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", run_config)
        batches, steps = _binary_batches(data, cfg, k)
        model = _seeded_model(profile.model.name, 1, profile.model.width, cfg.seed * 1000 + k).to(device)
        opt = make_optimizer(model, cfg.lr_for(k), cfg.momentum, cfg.weight_decay)  # bookkeeping: never stepped
        sched = make_scheduler(opt, cfg, cfg.epochs, steps, cfg.lr_for(k))
        g = torch.Generator().manual_seed(cfg.seed)
        # resume after the last completed epoch (either path wrote last.pt)
        start, best, best_epoch = _resume(run_dir / "last.pt", model=model, opt=opt, sched=sched, g=g)
        r = dict(k=k, run_config=run_config, run_dir=run_dir, batches=batches, steps=steps, model=model, opt=opt,
                 sched=sched, g=g, start=start, best=best, best_epoch=best_epoch)
        r["select_metrics"], r["select_key"] = _binary_selection(data, cfg, k, device)
        runs.append(r)
    if len({r["start"] for r in runs}) > 1 or len({r["steps"] for r in runs}) > 1:
        return sequentially("the classes stand at different epochs or have different epoch lengths")
    models = [r["model"] for r in runs]
    fused = FusedBinaryModels([m.train() for m in models]).to(device)
    fopt = FusedSGD(fused.parameters(), lrs=[r["opt"].param_groups[0]["lr"] for r in runs], momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay)
    # FusedSGD's momentum buffers <-> each class's optimizer state (parameters in named_parameters order)
    fparams = [dict(fused.named_parameters())[n.replace(".", "__")] for n, _ in models[0].named_parameters()]
    if runs[0]["start"] > 0:
        params = [list(r["model"].parameters()) for r in runs]  # (K, P), the same order as fparams
        for j, fp in enumerate(fparams):
            bufs = [r["opt"].state.get(ps[j], {}).get("momentum_buffer") for r, ps in zip(runs, params)]
            if all(b is not None for b in bufs):
                fopt.state[fp]["momentum_buffer"] = torch.stack(bufs).to(device)
    start, steps, epochs, K = runs[0]["start"], runs[0]["steps"], cfg.epochs, len(runs)
    t_start = time.time()
    bar = tqdm(range(start, epochs), desc=f"d_k x {K} (fused)", initial=start, total=epochs, disable=not progress,
               unit="epoch")
    for epoch in bar:
        t0, n_img = time.time(), 0
        sums = [{} for _ in runs]
        iters = [iter(r["batches"](r["g"])) for r in runs]
        for step in tqdm(range(steps), leave=False, disable=not progress, unit="batch", desc=f"epoch {epoch + 1}"):
            pos, neg = [], []
            for r, it in zip(runs, iters):  # each class draws from its own generator, in the sequential order
                b_pos, b_neg = next(it)
                pos.append(_to_device(gdata.augment(b_pos, cfg.augment, r["g"]), device, False))
                neg.append(_to_device(gdata.augment(b_neg, cfg.augment, r["g"]), device, False))
            fopt.set_lrs([r["opt"].param_groups[0]["lr"] for r in runs])
            loss, stats = fused_train_step(fused, fopt, torch.stack(pos), torch.stack(neg), cfg, runs[0]["g"])
            if not torch.isfinite(loss):
                bad = [CLASSES[r["k"]] for r, lk in zip(runs, stats["loss_k"]) if not torch.isfinite(lk)]
                raise TrainingDiverged(
                    f"d_k (fused): loss of {bad} became non-finite at epoch {epoch + 1}, step {step + 1}; each "
                    f"class's last good checkpoint (last.pt, epoch {epoch}) is kept; lower train.lr and run again")
            with warnings.catch_warnings():  # the bookkeeping optimizers are never stepped: FusedSGD steps for them
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                for r in runs:
                    r["sched"].step()
            per_model = {key: stats[f"{key}_k"].tolist() for key in ("loss", "acc")}  # one device sync, (K,) each
            for i, s_ in enumerate(sums):
                for key, values in per_model.items():
                    s_[key] = s_.get(key, 0.0) + values[i]
            n_img += sum(len(p) + len(q) for p, q in zip(pos, neg))
        train_time = time.time() - t0
        state = [fused.model_state_dict(i) for i in range(K)]
        for i, r in enumerate(runs):
            r["model"].load_state_dict(state[i])
            for fp, p in zip(fparams, r["model"].parameters()):  # the class's optimizer state, as if it stepped
                buf = fopt.state.get(fp, {}).get("momentum_buffer")
                if buf is not None:
                    r["opt"].state[p]["momentum_buffer"] = buf[i].detach().clone()
            rec = {"epoch": epoch + 1, "lr": r["opt"].param_groups[0]["lr"], "train_time_s": round(train_time, 2),
                   "images_per_s": round(n_img / K / max(train_time, 1e-9), 1),
                   "fused_models": K, "fused_images_per_s": round(n_img / max(train_time, 1e-9), 1)}
            rec.update({f"train_{key}": v / max(1, steps) for key, v in sums[i].items()})
            r["best"], r["best_epoch"] = _end_epoch(
                r["run_dir"], rec, model=r["model"], opt=r["opt"], sched=r["sched"], g=r["g"], epoch=epoch,
                epochs=epochs, cfg=cfg, select_metrics=r["select_metrics"], select_key=r["select_key"],
                best=r["best"], best_epoch=r["best_epoch"], ckpt_kind="binary",
                ckpt_config=_binary_ckpt_config(profile, r["k"]), run_config=r["run_config"])
            r["model"].train()
        fused.train()
    for r in runs:
        _finish(r["run_dir"], model=r["model"], cfg=cfg, epochs=epochs, best=r["best"], best_epoch=r["best_epoch"],
                select_key=r["select_key"], run_config=r["run_config"], data_source=data.source, device=device,
                wall_time_s=time.time() - t_start, path=f"fused ({K} models)")
    return [binary_result(profile, k) for k in wanted]


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
