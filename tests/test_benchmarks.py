"""The benchmarks that the GPU script (benchmarks/run_gpu.sh) runs must not rot between GPU sessions: run the
end-to-end one on the CPU at the smoke profile's size and check what it prints."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def test_gpu_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "run_gpu.sh")]).returncode == 0


def test_bench_epoch_compares_with_an_old_tree(tmp_path):
    """--compare-old with a directory holding an old lib/: both engines measured in one run, the ratio printed."""
    old = tmp_path / "old"
    shutil.copytree(ROOT / "lib", old / "lib")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_epoch.py"), "--device", "cpu",
                          "--profile", "smoke", "--paths", "sequential", "--train-per-class", "40", "--threads", "1",
                          "--compare-old", str(old)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "GENROBUST_RUNS": str(tmp_path / "runs")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(old engine); new / old = " in out.stdout and "x on CPU" in out.stdout
