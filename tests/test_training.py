"""Training loop: train-if-missing, resume after kill -9, NaN guard, selection, calibration."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from genrobust.core import objectives
from genrobust.store import checkpoints, runs
from genrobust.training import binary, calibrate, loop, softmax, steppers
from genrobust.core.config import apply_overrides, get_profile
from genrobust.store.io import read_jsonl

TINY = {"data.synthetic_train_per_class": 64, "data.synthetic_test_per_class": 16, "data.val_per_class": 8,
        "train.batch_size": 32, "train.epochs": 2}


def tiny_profile(**extra):
    return apply_overrides(get_profile("smoke"), {**TINY, **extra})


def test_lr_schedules():
    f = lambda sched, s: loop.lr_factor(sched, s, 100, 10, 5, 0.1)  # noqa: E731
    assert f("constant", 50) == 1.0
    assert f("step", 49) == 1.0 and f("step", 50) == pytest.approx(0.1)  # paper: 0.1 -> 0.01 after epoch 1500
    assert f("onecycle", 0) == 0.0 and f("onecycle", 20) == pytest.approx(1.0) and f("onecycle", 100) == 0.0
    assert f("cosine", 0) == 1.0 and f("cosine", 100) == pytest.approx(0.0, abs=1e-9)


def test_train_binary_then_reuse(tmp_runs):
    p = tiny_profile()
    res = binary.train_binary(p, 3, progress=False)
    assert res["epochs"] == 2 and [m["epoch"] for m in res["metrics"]] == [1, 2]
    assert res["select_key"] == "val_adv_auroc" and 1 <= res["best_epoch"] <= 2
    assert res["provenance"]["data_source"]["synthetic"] is True
    run_dir = runs.run_dir_for(runs.binary_run_config(p, 3))
    stamp = (run_dir / "result.json").stat().st_mtime_ns
    again = binary.train_binary(p, 3, progress=False)  # finished: reused, not retrained
    assert again == res and (run_dir / "result.json").stat().st_mtime_ns == stamp
    assert runs.binary_result(p, 3) == res
    # a different config is a different run
    assert runs.binary_result(apply_overrides(p, {"train.seed": 1}), 3) is None


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_runs, monkeypatch):
    p = tiny_profile(**{"train.epochs": 3})
    real = objectives.binary_bce
    calls = {"n": 0}
    steps_per_epoch = 64 // 16  # 64 positives, 16 per half-batch

    def poisoned(model, x_pos, x_neg):
        calls["n"] += 1
        loss, stats = real(model, x_pos, x_neg)
        return (loss * float("nan"), stats) if calls["n"] > steps_per_epoch else (loss, stats)

    monkeypatch.setattr(objectives, "binary_bce", poisoned)
    with pytest.raises(loop.TrainingDiverged, match=r"d_0 \(airplane\): loss became non-finite at epoch 2, step \d.*lower the learning rate"):
        binary.train_binary(p, 0, progress=False)
    run_dir = runs.run_dir_for(runs.binary_run_config(p, 0))
    last = torch.load(run_dir / "last.pt", weights_only=False)
    assert last["epoch"] == 0  # epoch 1 (0-based 0) completed and kept
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert not (run_dir / "result.json").exists()


def test_nan_guard_of_the_fused_path_names_the_class(tmp_runs, monkeypatch):
    """The one NaN guard serves the K models stepped together: it names the class whose loss broke, stops before
    the update, and keeps every class's last good checkpoint."""
    p = tiny_profile(**{"train.epochs": 3, "train.classes": (2, 5)})
    real, calls = objectives.binary_bce, {"n": 0}

    def poisoned(model, x_pos, x_neg):
        calls["n"] += 1
        loss_k, stats = real(model, x_pos, x_neg)
        if calls["n"] > 3:  # the second epoch (3 steps per epoch): class 5's loss only
            loss_k = loss_k * torch.tensor([1.0, float("nan")])
        return loss_k, stats

    monkeypatch.setattr(objectives, "binary_bce", poisoned)
    with pytest.raises(loop.TrainingDiverged, match=r"loss of d_5 \(dog\) became non-finite at epoch 2, step 1"):
        binary.train_binaries_fused(p, progress=False)
    for k in (2, 5):
        last = torch.load(runs.run_dir_for(runs.binary_run_config(p, k)) / "last.pt", weights_only=True)
        assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["model"].values()
                                          if v.is_floating_point())
        assert runs.binary_result(p, k) is None


RESUME_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from genrobust.training import binary
from genrobust.core.config import apply_overrides, get_profile
p = apply_overrides(get_profile("smoke"), {TINY!r})
binary.train_binary(p, 1, progress=False)
"""


@pytest.mark.slow
def test_kill_9_then_resume_loses_at_most_one_epoch(tmp_runs):
    over = {**TINY, "data.synthetic_train_per_class": 200, "train.epochs": 6}
    p = apply_overrides(get_profile("smoke"), over)
    run_dir = runs.run_dir_for(runs.binary_run_config(p, 1))
    script = RESUME_SCRIPT.replace("{TINY!r}", repr(over))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_jsonl(run_dir / "metrics.jsonl")) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # kill -9 at an arbitrary point of epoch 3
    proc.wait()
    done_before = len(read_jsonl(run_dir / "metrics.jsonl"))
    assert 2 <= done_before < 6, "the run should have been killed mid-way"
    assert not (run_dir / "result.json").exists()
    resumed_from = torch.load(run_dir / "last.pt", weights_only=False)["epoch"] + 1
    assert resumed_from >= done_before - 1  # at most the epoch in progress is lost
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    res = json.loads((run_dir / "result.json").read_text())
    epochs = [m["epoch"] for m in res["metrics"]]
    assert epochs[-1] == 6 and sorted(set(epochs)) == [1, 2, 3, 4, 5, 6]
    assert len(epochs) - 6 <= 1  # at most one epoch was repeated


def test_fit_calibration_recovers_offsets():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (4000,), generator=g)
    bias = torch.tensor([1.0, -1.0, 0.5, 0.0, -0.5])
    s = 2.0 * torch.nn.functional.one_hot(y, 5).float() + torch.randn(4000, 5, generator=g) - bias
    c, hist = calibrate.fit_calibration(s[:3000], y[:3000], s[3000:], y[3000:], lr=0.05, max_steps=3000, patience=200)
    # c is identified up to a constant: compare centred values
    assert torch.allclose(c - c.mean(), bias - bias.mean(), atol=0.15)
    assert calibrate.accuracy(s[3000:] + c, y[3000:]) > calibrate.accuracy(s[3000:], y[3000:]) + 0.05
    assert hist[-1]["select_loss"] <= hist[0]["select_loss"]


def test_import_robustness_library_checkpoint(tmp_runs):
    """A file laid out like MadryLab robustness's CIFAR ResNet50 checkpoints maps onto our ResNet50 exactly."""
    from genrobust.core.models import create_model
    from genrobust.store.checkpoints import load_classifier
    torch.manual_seed(0)
    theirs = create_model("resnet50", 10, 1.0).eval()
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])
    sd = {}
    for k, v in theirs.state_dict().items():
        sd[f"module.model.{k}"] = v
        sd[f"module.attacker.model.{k}"] = v
    sd["module.normalizer.new_mean"] = mean.view(3, 1, 1)
    sd["module.normalizer.new_std"] = std.view(3, 1, 1)
    torch.save({"model": sd, "epoch": 150}, tmp_runs / "cifar_l2_0_5.pt")
    p = apply_overrides(get_profile("paper"), {"softmax.checkpoint": str(tmp_runs / "cifar_l2_0_5.pt")})
    res = softmax.train_softmax(p, data=object())  # data unused for an import
    clf = load_classifier(res["checkpoint"])
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        theirs.normalize.mean.copy_(mean.view(1, 3, 1, 1))
        theirs.normalize.std.copy_(std.view(1, 3, 1, 1))
        assert torch.allclose(clf(x), theirs(x), atol=1e-5)
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_runs / "other.pt")
    with pytest.raises(ValueError, match="module.model"):
        checkpoints.robustness_state_dict(tmp_runs / "other.pt")


# ---------------------------------------------------------------------------------------------------------------
# The K binary models trained together (genrobust.training.fused) vs one after another
def _states(p, classes):
    return {k: torch.load(runs.binary_result(p, k)["checkpoint"], weights_only=False)["state"]["model"]
            for k in classes}


def _assert_same_runs(p, a, b, classes, tol=1e-4):
    for k in classes:
        for name, t in a[k].items():
            assert torch.allclose(t.float(), b[k][name].float(), atol=tol, rtol=tol), (k, name)


def test_fused_training_gives_the_sequential_runs(tmp_path, monkeypatch):
    p = tiny_profile(**{"train.classes": (0, 3, 7)})
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "seq"))
    seq = [binary.train_binary(p, k, progress=False) for k in (0, 3, 7)]
    seq_states = _states(p, (0, 3, 7))
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "fused"))
    real, selected = steppers.binary_auroc_k, []  # the models of each selection pass
    monkeypatch.setattr(steppers, "binary_auroc_k", lambda net, pos, *a, **kw: selected.append(len(pos)) or
                        real(net, pos, *a, **kw))
    fused = binary.train_binaries_fused(p, progress=False)
    assert [r["path"] for r in fused] == ["fused (3 models)"] * 3
    assert selected == [3, 3]  # the 3 d_k selected at once, once per epoch, on the fused network
    _assert_same_runs(p, seq_states, _states(p, (0, 3, 7)), (0, 3, 7))
    for s, f in zip(seq, fused):
        assert s["best_epoch"] == f["best_epoch"] and s["best_metric"] == pytest.approx(f["best_metric"], abs=1e-4)
        for ms, mf in zip(s["metrics"], f["metrics"]):
            for key in ("lr", "train_loss", "train_acc", "val_clean_auroc", "val_adv_auroc"):
                assert ms[key] == pytest.approx(mf[key], abs=1e-4), key
    # a wrong implementation must not pass: a different seed gives different weights
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "other"))
    q = apply_overrides(p, {"train.seed": 1})
    binary.train_binaries_fused(q, progress=False)
    with pytest.raises(AssertionError):
        _assert_same_runs(p, seq_states, _states(q, (0, 3, 7)), (0, 3, 7))


def test_fused_run_interrupted_resumes_sequentially(tmp_path, monkeypatch):
    """last.pt written by the fused loop is the sequential resume point: stop after epoch 1, finish one by one."""
    p = tiny_profile(**{"train.classes": (1, 2), "train.epochs": 3})
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "seq"))
    for k in (1, 2):
        binary.train_binary(p, k, progress=False)
    seq_states = _states(p, (1, 2))
    monkeypatch.setenv("GENROBUST_RUNS", str(tmp_path / "mixed"))
    real, saved = loop.save_torch, []

    def stop_after_first_epoch(path, obj):
        real(path, obj)
        saved.append(path)
        if len(saved) == 2:  # both classes' last.pt of epoch 1
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_torch", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        binary.train_binaries_fused(p, progress=False)
    monkeypatch.setattr(loop, "save_torch", real)
    assert runs.binary_result(p, 1) is None
    for k in (1, 2):
        res = binary.train_binary(p, k, progress=False)
        assert [m["epoch"] for m in res["metrics"]] == [1, 2, 3] and "path" not in res
    _assert_same_runs(p, seq_states, _states(p, (1, 2)), (1, 2))


def test_select_every(tmp_runs):
    p = tiny_profile(**{"train.epochs": 3, "train.select_every": 2})
    res = binary.train_binary(p, 0, progress=False)
    assert ["val_adv_auroc" in m for m in res["metrics"]] == [False, True, True]  # epoch 2, and the last
    assert res["best_epoch"] in (2, 3)
