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
from .loop import (OneModel, Run, TrainingDiverged, default_device, fit, open_run, seeded_model, select_split,
                   to_device)


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

    run = _open(profile, k, model, data, device, steps_per_epoch)
    desc = f"d_{k} ({CLASSES[k]})"
    return fit(OneModel(run, batches, step_loss, desc), cfg=cfg, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
               data_source=data.source, device=device, desc=desc, progress=progress)[0]


def _open(profile: Profile, k: int, model, data: Prepared, device, steps_per_epoch: int,
          channels_last: bool | None = None) -> Run:
    """d_k's :class:`genrobust.training.loop.Run`, resumed from its last.pt (either path wrote it)."""
    cfg = profile.train
    select_metrics, select_key = _binary_selection(data, cfg, k, device)
    return open_run(run_dir_for(binary_run_config(profile, k)), model=model, cfg=cfg, lr=cfg.lr_for(k),
                    epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, ckpt_kind="binary",
                    ckpt_config=_binary_ckpt_config(profile, k), run_config=binary_run_config(profile, k),
                    device=device, select_metrics=select_metrics, select_key=select_key, channels_last=channels_last)


# ---------------------------------------------------------------------------------------------------------------
# The K binary models trained together (genrobust.training.fused): same runs, same files, same numbers
class KModels:
    """The stepper of K binary models stepped together (:class:`genrobust.training.fused.FusedBinaryModels`, one
    :class:`FusedSGD` step per batch, per-model learning rates from each run's own scheduler). Each run keeps its
    generator (batch order, augmentation), so the numbers are those of K separate runs; the runs' own models and
    optimizer states are brought up to date at the end of each epoch (:meth:`sync`) for checkpoints and selection.
    The one difference: with train.attack_random_start, all K random starts come from the first run's generator."""

    def __init__(self, runs: list[Run], classes, batches, cfg: TrainConfig, device):
        self.runs, self.classes, self.make_batches, self.cfg, self.device = runs, list(classes), batches, cfg, device
        models = [r.model for r in runs]
        self.fused = FusedBinaryModels([m.train() for m in models]).to(device)
        self.opt = FusedSGD(self.fused.parameters(), lrs=[r.opt.param_groups[0]["lr"] for r in runs],
                            momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        # FusedSGD's momentum buffers <-> each run's optimizer state (parameters in named_parameters order)
        self.fparams = [dict(self.fused.named_parameters())[n.replace(".", "__")] for n, _ in models[0].named_parameters()]
        if runs[0].start > 0:
            params = [list(r.model.parameters()) for r in runs]  # (K, P), the same order as fparams
            for j, fp in enumerate(self.fparams):
                bufs = [r.opt.state.get(ps[j], {}).get("momentum_buffer") for r, ps in zip(runs, params)]
                if all(b is not None for b in bufs):
                    self.opt.state[fp]["momentum_buffer"] = torch.stack(bufs).to(device)

    def batches(self):
        return zip(*(make(r.g) for make, r in zip(self.make_batches, self.runs)))

    def step(self, batch, epoch: int, step: int) -> tuple[dict[str, torch.Tensor], int]:
        pos, neg = [], []
        for r, (b_pos, b_neg) in zip(self.runs, batch):  # each class augments with its own generator, in order
            pos.append(to_device(augment(b_pos, self.cfg.augment, r.g), self.device, False))
            neg.append(to_device(augment(b_neg, self.cfg.augment, r.g), self.device, False))
        self.opt.set_lrs([r.opt.param_groups[0]["lr"] for r in self.runs])
        loss, stats = fused_train_step(self.fused, self.opt, torch.stack(pos), torch.stack(neg), self.cfg,
                                       self.runs[0].g)
        if not torch.isfinite(loss):
            bad = [CLASSES[k] for k, lk in zip(self.classes, stats["loss_k"]) if not torch.isfinite(lk)]
            raise TrainingDiverged(
                f"d_k (fused): loss of {bad} became non-finite at epoch {epoch + 1}, step {step + 1}; each "
                f"class's last good checkpoint (last.pt, epoch {epoch}) is kept; lower train.lr and run again")
        with warnings.catch_warnings():  # the runs' optimizers are never stepped: FusedSGD steps for them
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
            for r in self.runs:
                r.sched.step()
        return {key: stats[f"{key}_k"] for key in ("loss", "acc")}, sum(len(p) + len(q) for p, q in zip(pos, neg))

    def train(self) -> None:
        self.fused.train()

    def sync(self) -> None:
        """Each run's model and optimizer state from the fused module, as if it had stepped alone."""
        state = [self.fused.model_state_dict(i) for i in range(len(self.runs))]
        for i, r in enumerate(self.runs):
            r.model.load_state_dict(state[i])
            for fp, p in zip(self.fparams, r.model.parameters()):
                buf = self.opt.state.get(fp, {}).get("momentum_buffer")
                if buf is not None:
                    r.opt.state[p]["momentum_buffer"] = buf[i].detach().clone()

    def epoch_record(self, n_img: int, seconds: float) -> dict:
        k = len(self.runs)
        return {"images_per_s": round(n_img / k / max(seconds, 1e-9), 1), "fused_models": k,
                "fused_images_per_s": round(n_img / max(seconds, 1e-9), 1)}


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
    batches, steps = zip(*(_binary_batches(data, cfg, k) for k in classes))
    runs = [_open(profile, k, seeded_model(profile.model.name, 1, profile.model.width, cfg.seed * 1000 + k), data,
                  device, steps[0], channels_last=False) for k in classes]
    if len({r.start for r in runs}) > 1 or len(set(steps)) > 1:
        return sequentially("the classes stand at different epochs or have different epoch lengths")
    stepper = KModels(runs, classes, batches, cfg, device)
    fit(stepper, cfg=cfg, epochs=cfg.epochs, steps_per_epoch=steps[0], data_source=data.source, device=device,
        desc=f"d_k x {len(runs)} (fused)", progress=progress, path=f"fused ({len(runs)} models)")
    return [binary_result(profile, k) for k in wanted]
