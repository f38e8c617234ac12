"""The softmax PGD-AT baseline (Madry et al., L2): cross-entropy on PGD examples, trained by the one loop
(:func:`genrobust.training.loop.fit`), or imported from a published robustness-library checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.attacks import pgd_untargeted
from ..core.fold import folded_copy
from ..core.config import Profile, SoftmaxConfig
from ..core.device import default_device
from ..core.models import count_parameters, create_model
from ..data.batches import to_float
from ..data.splits import Prepared, prepare_data
from ..store.checkpoints import robustness_state_dict, save_checkpoint
from ..store.io import read_json, write_json
from ..store.provenance import provenance
from ..store.runs import run_dir_for, softmax_run_config
from .loop import BestCheckpoint, Selection, TrainingRun, engine_for, fit, open_run, seeded_model, select_split
from .steppers import SoftmaxStepper


def _class_batches(x, y, batch_size, g):
    perm = torch.randperm(len(y), generator=g)
    for i in range(0, len(perm) - batch_size + 1, batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]


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
    run = open_run(TrainingRun(
        run_dir, run_config, label=f"softmax {cfg.model}", model=seeded_model(cfg.model, 10, cfg.width, cfg.seed),
        generator=torch.Generator().manual_seed(cfg.seed),
        make_batches=lambda g: _class_batches(data.train_x, data.train_y, cfg.batch_size, g),
        steps_per_epoch=len(data.train_y) // cfg.batch_size, cfg=cfg, base_lr=cfg.lr, epochs=cfg.epochs,
        checkpoint=BestCheckpoint("softmax", {"name": cfg.model, "width": cfg.width, "num_outputs": 10}),
        selection=_softmax_selection(data, cfg, device)), device=device, channels_last=cfg.channels_last)
    engine = engine_for(profile.engine, device)
    return fit([run], SoftmaxStepper(run, cfg, device, engine), data_source=data.source, device=device,
               desc=run.label, progress=progress, engine=engine)[0]


def _softmax_selection(data: Prepared, cfg: SoftmaxConfig, device) -> Selection:
    """The softmax model's selection: clean and robust accuracy (L2 PGD-5 within ``cfg.eps``) on 50 images per
    class of the selection split, keeping the best robust accuracy; no selection without a selection split."""
    sel = select_split(data, cfg.select_on, 50, cfg.seed)
    if sel is None:
        return Selection()
    x, y = to_float(sel[0]).to(device), sel[1].to(device)
    split_name = cfg.select_on if cfg.select_on != "last" else "val"

    def metrics(model):
        work = folded_copy(model, channels_last=None)  # frozen, eval mode, BN folded: the attack's hot path
        with torch.no_grad():
            clean = (work(x).argmax(1) == y).float().mean().item()
        xa = pgd_untargeted(work, x, y, eps=cfg.eps, norm="l2", steps=5,
                            generator=torch.Generator().manual_seed(cfg.seed))
        with torch.no_grad():
            rob = (work(xa).argmax(1) == y).float().mean().item()
        return {f"{split_name}_clean_acc": clean, f"{split_name}_robust_acc": rob}
    return Selection(metrics, None if cfg.select_on == "last" else f"{split_name}_robust_acc")
