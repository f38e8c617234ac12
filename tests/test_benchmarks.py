"""The benchmarks that the GPU script (benchmarks/run_gpu.sh) runs must not rot between GPU sessions: run the
end-to-end one on the CPU at the smoke profile's size and check what it prints."""
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genrobust.core.config import TrainConfig
from genrobust.core.models import create_model
from genrobust.training import steppers

ROOT = Path(__file__).resolve().parents[1]


def test_bench_fused_times_both_paths_through_the_training_step(monkeypatch):
    """bench_fused.py drives the training step itself (BinaryStepper.step): K = 1 steppers one after another and
    one K-model stepper, each step counted; the rates and their ratio are consistent."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    bench_fused = importlib.import_module("bench_fused")
    calls = []
    real = steppers.BinaryStepper.step
    monkeypatch.setattr(steppers.BinaryStepper, "step",
                        lambda self, b, **kw: calls.append(len(b)) or real(self, b, **kw))
    cfg = TrainConfig(attack_steps=1, channels_last=False)
    make = lambda k: create_model("small_cnn", 1, 0.25)  # noqa: E731
    res = bench_fused.measure_training_paths(make, cfg, "cpu", num_models=2, batch_size=8, repeats=2, warmup=1)
    assert calls == [1, 1] * 3 + [2] * 3  # (1 warm-up + 2 timed) x (2 single steps), then 3 fused steps
    assert res["sequential"] > 0 and res["fused"] > 0
    assert res["ratio"] == pytest.approx(res["fused"] / res["sequential"])


@pytest.mark.slow
def test_bench_epoch_runs_both_paths_and_projects(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "GENROBUST_RUNS": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_epoch.py"), "--device", "cpu",
                          "--profile", "smoke", "--train-per-class", "64", "--epochs", "1", "--softmax",
                          "--threads", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    rates = {p: float(r) for p, r in re.findall(r"^\s+(fused|sequential)\s+([\d.]+) img/s", text, re.M)}
    assert set(rates) == {"fused", "sequential"} and all(r > 0 for r in rates.values()), text
    ratio = float(re.search(r"fused / sequential: ([\d.]+)x", text).group(1))
    assert abs(ratio - rates["fused"] / rates["sequential"]) < 0.01 + 0.01 * ratio, text
    # the smoke profile's own data size: 120 synthetic images per class less 20 for validation = 100 positives,
    # 32 per batch of 64 -> 3 batches = 192 images per class and epoch (not CIFAR-10's 5,000 per class)
    assert "projected smoke training (10 classes x 2 epochs x 192 images, 2 selections per class)" in text, text
    assert re.search(r"projected smoke softmax training \(2 epochs x 960 images\)", text), text
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("result.json")), \
        "bench_epoch must train in throw-away run directories"


@pytest.mark.slow
def test_bench_epoch_compares_with_an_old_revision(tmp_path):
    """--compare-old runs the engine of a git revision (here HEAD, in a temporary worktree) in the same run and
    prints new / old per path, equal to the ratio of the two printed rates; the worktree is removed after."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "GENROBUST_RUNS": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_epoch.py"), "--device", "cpu",
                          "--profile", "smoke", "--train-per-class", "40", "--epochs", "1", "--paths", "sequential",
                          "--threads", "1", "--compare-old", "HEAD"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    old = float(re.search(r"old engine \(\w+\) sequential\s+([\d.]+) img/s  on CPU", text).group(1))
    new = float(re.search(r"^\s+sequential\s+([\d.]+) img/s .*new engine, CPU", text, re.M).group(1))
    ratio = float(re.search(r"new / old engine \(\w+\), sequential: ([\d.]+)x", text).group(1))
    assert old > 0 and new > 0 and abs(ratio - new / old) < 0.01 + 0.01 * ratio, text
    trees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list", "--porcelain"], capture_output=True,
                           text=True).stdout
    assert "bench_epoch_old_" not in trees, trees


def test_gpu_scripts_parse():
    for script in ("run_gpu.sh", "gpu_engine_check.sh"):
        assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)]).returncode == 0, script
