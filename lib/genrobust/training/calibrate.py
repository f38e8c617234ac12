"""Calibration constants c_k of Eq. 7 (Section 3.4.1, Tab. 3, Tab. 4, Fig. 4).

The K binary models are frozen; their outputs d_k(x) on the calibration sets are computed once and cached
(``scores``), and c (K,) is fitted by minimizing the cross-entropy of softmax(d(x) + c) with Adam, starting from
c = 0, with early stopping on the selection split's cross-entropy (the paper early-stops on the test set).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.cifar10 import NUM_CLASSES
from ..core.config import Profile, to_dict
from ..core.models import GenerativeClassifier
from ..data.batches import to_float
from ..data.splits import Prepared, prepare_data, subset_per_class
from ..store.checkpoints import load_model, save_checkpoint, weights_digest
from ..store.io import write_json
from ..store.provenance import provenance
from ..store.runs import binary_result, classifier_path, classifier_run_config


class CalibrationError(RuntimeError):
    pass


def load_binary_models(profile: Profile) -> tuple[list, list[dict]]:
    """The K trained d_k of this profile (best checkpoints, frozen, eval mode), in class order, and their run
    results. Missing ones are an error: training them is the pipeline's job (genrobust.pipeline.ensure_classifiers)."""
    results = [binary_result(profile, k) for k in range(NUM_CLASSES)]
    missing = [k for k, r in enumerate(results) if r is None]
    if missing:
        raise CalibrationError(f"d_k of profile {profile.name!r} not trained for classes {missing}; run notebook 01 "
                               f"(or `genrobust train --profile {profile.name}`) first")
    return [load_model(r["checkpoint"]) for r in results], results


@torch.no_grad()
def scores(model: GenerativeClassifier, x_uint8: torch.Tensor, *, batch_size: int = 500, device="cpu",
           progress: bool = False, desc: str = "d_k(x)") -> torch.Tensor:
    """Uncalibrated d(x): (N, K) float32 for uint8 images (N, 3, 32, 32), computed once per split."""
    model = model.to(device).eval()
    out = []
    for i in tqdm(range(0, len(x_uint8), batch_size), disable=not progress, desc=desc, leave=False):
        xb = to_float(x_uint8[i:i + batch_size], device)
        out.append(torch.stack([model.d(xb, k) for k in range(model.num_classes)], 1).float().cpu())
    return torch.cat(out)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def fit_calibration(s_train, y_train, s_select, y_select, *, lr=0.01, max_steps=2000, patience=100):
    """c (K,) minimizing CE(s_train + c, y_train); early stopping on CE(s_select + c, y_select).
    Returns (c, history) with history a list of {step, train_loss, select_loss}."""
    c = torch.zeros(s_train.shape[1], requires_grad=True)
    opt = torch.optim.Adam([c], lr=lr)
    best, best_c, since, hist = float("inf"), c.detach().clone(), 0, []
    for step in range(max_steps):
        loss = F.cross_entropy(s_train + c, y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            sel = float(F.cross_entropy(s_select + c, y_select))
        hist.append({"step": step + 1, "train_loss": loss.item(), "select_loss": sel})
        if sel < best - 1e-7:
            best, best_c, since = sel, c.detach().clone(), 0
        else:
            since += 1
            if since >= patience:
                break
    return best_c, hist


def calibrate(profile: Profile, data: Prepared | None = None, *, device="cpu", progress=True) -> dict:
    """Fit c, save the calibrated GenerativeClassifier checkpoint (loadable by genrobust.load_classifier) and
    return the calibration record (Tab. 3 accuracies, Tab. 4 c values, cached scores for Fig. 4)."""
    t0 = time.time()
    cfg = profile.calib
    data = data or prepare_data(profile.data, progress=progress)
    models, bin_results = load_binary_models(profile)
    gen = GenerativeClassifier(models)
    idx = subset_per_class(data.train_y, _cap(cfg.train_per_class, data.train_y), profile.data.seed)
    x_train, y_train = data.train_x[idx], data.train_y[idx]
    s_train = scores(gen, x_train, device=device, progress=progress, desc="d_k on train")
    s_test = scores(gen, data.test_x, device=device, progress=progress, desc="d_k on test")
    if cfg.select_on == "val":
        if len(data.val_y) == 0:
            raise CalibrationError("calib.select_on='val' needs data.val_per_class > 0; set it or use 'test'")
        s_sel, y_sel = scores(gen, data.val_x, device=device, progress=progress, desc="d_k on val"), data.val_y
    elif cfg.select_on == "test":
        s_sel, y_sel = s_test, data.test_y
    else:
        s_sel, y_sel = s_train, y_train
    c, hist = fit_calibration(s_train, y_train, s_sel, y_sel, lr=cfg.lr, max_steps=cfg.max_steps,
                              patience=cfg.patience)
    gen.c.copy_(c)
    path = classifier_path(profile)
    save_checkpoint(path, kind="generative",
                    state={"models": [m.state_dict() for m in models], "c": c.clone()},
                    config={**to_dict(profile.model), "num_outputs": 10},
                    run_config=classifier_run_config(profile))
    record = {
        "checkpoint": str(path),
        "weights_sha256": weights_digest(path),
        "c": c.tolist(),
        "accuracy": {
            "train_before": accuracy(s_train, y_train), "train_after": accuracy(s_train + c, y_train),
            "test_before": accuracy(s_test, data.test_y), "test_after": accuracy(s_test + c, data.test_y),
        },
        "n": {"train": len(y_train), "test": len(data.test_y), "select": len(y_sel)},
        "select_on": cfg.select_on,
        "steps": len(hist),
        "history": hist,
        "binary_best_epochs": [r["best_epoch"] for r in bin_results],
        # the d_k it was built from, so a report can check that 01's models are the ones calibrated here
        "binary_weights_sha256": [weights_digest(r["checkpoint"]) for r in bin_results],
        "provenance": provenance(classifier_run_config(profile), data_source=data.source, seed=profile.data.seed,
                                 wall_time_s=round(time.time() - t0, 1), device=device),
    }
    write_json(path.with_name("calibration.json"), record)
    # cached scores travel with the record (not into JSON): Fig. 4 histograms need them
    record["_scores"] = {"train": (s_train, y_train), "test": (s_test, data.test_y)}
    return record


def _cap(n, y):
    smallest = int(torch.bincount(y).min())
    return None if n is None else min(n, smallest)
