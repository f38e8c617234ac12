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

from . import data as gdata
from .config import Profile, config_hash, to_dict
from .models import GenerativeClassifier, create_model
from .results import (provenance, read_checkpoint, read_json, runs_dir, save_checkpoint, weights_digest,
                      write_json)
from .train import Prepared, binary_result, prepare_data, train_binary


class CalibrationError(RuntimeError):
    pass


def load_binary_models(profile: Profile, *, train_missing: bool = False, data: Prepared | None = None):
    """The K trained d_k of this profile (best checkpoints), in class order; trains missing ones if asked."""
    models, results = [], []
    for k in range(gdata.NUM_CLASSES):
        res = binary_result(profile, k)
        if res is None:
            if not train_missing:
                raise CalibrationError(f"d_{k} of profile {profile.name!r} is not trained; run notebook 01 "
                                       f"(or `genrobust train --profile {profile.name}`) first")
            res = train_binary(profile, k, data)
        ckpt = read_checkpoint(res["checkpoint"])
        m = create_model(ckpt["config"]["name"], 1, ckpt["config"]["width"])
        m.load_state_dict(ckpt["state"]["model"])
        models.append(m.eval())
        results.append(res)
    return models, results


@torch.no_grad()
def scores(model: GenerativeClassifier, x_uint8: torch.Tensor, *, batch_size: int = 500, device="cpu",
           progress: bool = False, desc: str = "d_k(x)") -> torch.Tensor:
    """Uncalibrated d(x): (N, K) float32 for uint8 images (N, 3, 32, 32), computed once per split."""
    model = model.to(device).eval()
    out = []
    for i in tqdm(range(0, len(x_uint8), batch_size), disable=not progress, desc=desc, leave=False):
        xb = gdata.to_float(x_uint8[i:i + batch_size], device)
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


def classifier_run_config(profile: Profile) -> dict:
    """Identity of a calibrated generative classifier: the K binary runs + the calibration config."""
    from .train import binary_run_config
    return {"kind": "generative", "binary_runs": [config_hash(binary_run_config(profile, k)) for k in range(10)],
            "calib": to_dict(profile.calib), "data": to_dict(profile.data)}


def classifier_path(profile: Profile):
    return runs_dir() / "generative" / config_hash(classifier_run_config(profile)) / "classifier.pt"


def calibrate(profile: Profile, data: Prepared | None = None, *, device="cpu", progress=True,
              train_missing=False) -> dict:
    """Fit c, save the calibrated GenerativeClassifier checkpoint (loadable by genrobust.load_classifier) and
    return the calibration record (Tab. 3 accuracies, Tab. 4 c values, cached scores for Fig. 4)."""
    t0 = time.time()
    cfg = profile.calib
    data = data or prepare_data(profile.data, progress=progress)
    models, bin_results = load_binary_models(profile, train_missing=train_missing, data=data)
    gen = GenerativeClassifier(models)
    idx = gdata.subset_per_class(data.train_y, _cap(cfg.train_per_class, data.train_y), profile.data.seed)
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


def calibration_record(profile: Profile) -> dict:
    return read_json(classifier_path(profile).with_name("calibration.json"))
