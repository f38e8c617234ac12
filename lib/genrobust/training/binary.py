"""Binary models d_k (Eq. 3 out-distribution AT, Eq. 9 combined AT): one run per class, or all classes together as
one vmapped network (:mod:`genrobust.training.fused`) with the same run files and, in tests, the same weights.
A run is keyed by :func:`genrobust.store.runs.binary_run_config` and trained by :func:`genrobust.training.loop.fit`.
"""
from __future__ import annotations

import time
import warnings

import torch
from tqdm.auto import tqdm

from ..core.config import Profile, TrainConfig, to_dict
from ..core.objectives import binary_loss
from ..core.scoring import binary_auroc
from ..data.base import CLASSES
from ..data.batches import BinaryBatches, augment, to_float
from ..data.splits import Prepared, prepare_data
from ..store.io import read_json, write_json
from ..store.runs import binary_result, binary_run_config, run_dir_for
from .fused import FusedBinaryModels, FusedSGD, fused_train_step
from .loop import (TrainingDiverged, default_device, end_epoch, finish, fit, make_optimizer, make_scheduler, resume,
                   seeded_model, select_split, to_device)


def _binary_selection(data: Prepared, cfg: TrainConfig, k: int, device):
    """(select_metrics, select_key) of d_k: clean and adversarial AUROC on the selection split (class-k images vs
    as many other-class images, drawn evenly and seeded); (None, None) without a selection split."""
    sel = select_split(data, cfg.select_on, cfg.select_n, cfg.seed)
    if sel is None:
        return None, None
    x, y = sel
    pos = to_float(x[y == k])
    neg_idx = (y != k).nonzero(as_tuple=True)[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    neg = to_float(x[neg_idx[torch.randperm(len(neg_idx), generator=gen)[:len(pos)]]])
    split_name = cfg.select_on if cfg.select_on != "last" else "val"

    def select_metrics(model):
        res = binary_auroc(model, pos, neg, (0.0, cfg.eps), steps=cfg.select_attack_steps, device=device,
                           seed=cfg.seed)
        return {f"{split_name}_clean_auroc": res[0.0], f"{split_name}_adv_auroc": res[cfg.eps]}
    return select_metrics, (None if cfg.select_on == "last" else f"{split_name}_adv_auroc")


def _binary_batches(data: Prepared, cfg: TrainConfig, k: int):
    """(make_batches(g), steps per epoch) of d_k's balanced batches."""
    batches = lambda g: BinaryBatches(data.train_x, data.train_y, k, cfg.batch_size, generator=g)  # noqa: E731
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
    model = seeded_model(profile.model.name, 1, profile.model.width, cfg.seed * 1000 + k)
    batches, steps_per_epoch = _binary_batches(data, cfg, k)

    def step_loss(model, batch, g):
        x_pos, x_neg = (to_device(augment(b, cfg.augment, g), device, cfg.channels_last) for b in batch)
        return binary_loss(model, x_pos, x_neg, cfg, g)

    select_metrics, select_key = _binary_selection(data, cfg, k, device)
    return fit(run_dir, model=model, cfg=cfg, lr=cfg.lr_for(k), epochs=cfg.epochs, make_batches=batches,
               steps_per_epoch=steps_per_epoch, step_loss=step_loss, select_metrics=select_metrics,
               select_key=select_key, ckpt_kind="binary", ckpt_config=_binary_ckpt_config(profile, k),
               run_config=run_config, data_source=data.source, device=device, desc=f"d_{k} ({CLASSES[k]})",
               progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# The K binary models trained together (genrobust.training.fused): same runs, same files, same numbers
def train_binaries_fused(profile: Profile, classes=None, data: Prepared | None = None, *, device=None,
                         progress: bool = True) -> list[dict]:
    """Train d_k for ``classes`` (default: profile.train.classes) together as one vmapped network
    (:class:`genrobust.training.fused.FusedBinaryModels`), train-if-missing. Returns each class's result.json content.

    Every class keeps its own run directory, with the files of :func:`train_binary` in the same formats, so the
    two paths are interchangeable, also mid-run: a fused run interrupted after epoch e resumes fused or
    sequentially from each class's last.pt. The numbers are those of the sequential path (tests/test_train.py
    checks weights and metrics), because each class keeps its own generator (batch order, augmentation), seeded
    initialization, optimizer hyperparameters and lr schedule; the K updates are one :class:`FusedSGD` step whose
    per-model learning rates come from each class's own scheduler. The one difference: with
    ``train.attack_random_start`` the random starts of all K models come from the first class's generator.

    Falls back to :func:`train_binary` per class (and says so) when fewer than two classes are left or the
    classes stand at different epochs (e.g. one was resumed sequentially)."""
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
        model = seeded_model(profile.model.name, 1, profile.model.width, cfg.seed * 1000 + k).to(device)
        opt = make_optimizer(model, cfg.lr_for(k), cfg.momentum, cfg.weight_decay)  # bookkeeping: never stepped
        sched = make_scheduler(opt, cfg, cfg.epochs, steps, cfg.lr_for(k))
        g = torch.Generator().manual_seed(cfg.seed)
        # resume after the last completed epoch (either path wrote last.pt)
        start, best, best_epoch = resume(run_dir / "last.pt", model=model, opt=opt, sched=sched, g=g)
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
                pos.append(to_device(augment(b_pos, cfg.augment, r["g"]), device, False))
                neg.append(to_device(augment(b_neg, cfg.augment, r["g"]), device, False))
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
            r["best"], r["best_epoch"] = end_epoch(
                r["run_dir"], rec, model=r["model"], opt=r["opt"], sched=r["sched"], g=r["g"], epoch=epoch,
                epochs=epochs, cfg=cfg, select_metrics=r["select_metrics"], select_key=r["select_key"],
                best=r["best"], best_epoch=r["best_epoch"], ckpt_kind="binary",
                ckpt_config=_binary_ckpt_config(profile, r["k"]), run_config=r["run_config"])
            r["model"].train()
        fused.train()
    for r in runs:
        finish(r["run_dir"], model=r["model"], cfg=cfg, epochs=epochs, best=r["best"], best_epoch=r["best_epoch"],
                select_key=r["select_key"], run_config=r["run_config"], data_source=data.source, device=device,
                wall_time_s=time.time() - t_start, path=f"fused ({K} models)")
    return [binary_result(profile, k) for k in wanted]
