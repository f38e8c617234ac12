"""Batch runs: the local executor end to end (real subprocesses), SLURM job parameters, CLI errors."""
import subprocess
import sys

import pytest

from genrobust.pipeline import classifiers, notebooks
from genrobust.pipeline.params import NOTEBOOK_PARAMETERS, notebook_profile, resolve_profile
from genrobust.store import executors
from genrobust.training.loop import default_device
from genrobust.core.config import ConfigError, SlurmConfig, apply_overrides, get_profile

TINY = {"data.synthetic_train_per_class": 48, "data.synthetic_test_per_class": 16, "data.val_per_class": 8,
        "train.batch_size": 32, "train.epochs": 1, "train.classes": (0, 1), "softmax.epochs": 1,
        "softmax.batch_size": 32, "softmax.width": 0.5}


def test_local_executor_trains_classes_and_softmax_in_subprocesses(tmp_runs):
    p = apply_overrides(get_profile("smoke"), TINY)
    rows, soft = classifiers.train_all(p, softmax=True, executor="local", workers=2, progress=False)
    assert [r["k"] for r in rows] == [0, 1]
    for r in rows:
        assert r["metrics"][-1]["epoch"] == 1 and r["checkpoint"].endswith("best.pt")
    assert soft["metrics"][-1]["epoch"] == 1
    # the jobs ran as separate processes: submitit left their logs
    logs = list((tmp_runs / "runs" / "jobs").glob("*_log.out"))
    assert len(logs) == 3
    # and a second call reuses them (no new jobs)
    rows2, _ = classifiers.train_all(p, softmax=True, executor="local", workers=2, progress=False)
    assert rows2 == rows and len(list((tmp_runs / "runs" / "jobs").glob("*_log.out"))) == 3


def test_fused_training_path_is_one_job(tmp_runs, monkeypatch):
    p = apply_overrides(get_profile("smoke"), {**TINY, "train_path": "fused"})
    assert classifiers.training_path(p) == "fused"
    assert classifiers.training_path(apply_overrides(p, {"train_path": "auto"})) == (
        "fused" if default_device().type == "cuda" else "sequential")
    calls = []
    real = classifiers._fused_job
    monkeypatch.setattr(classifiers, "_fused_job", lambda *a: calls.append(a[1]) or real(*a))
    rows = classifiers.train_all(p, executor="inline", progress=False)
    assert calls == [[0, 1]] and [r["k"] for r in rows] == [0, 1]
    assert all(r["path"] == "fused (2 models)" for r in rows)
    with pytest.raises(ConfigError, match="train_path"):
        apply_overrides(p, {"train_path": "grouped"})


def test_failed_job_is_reported(tmp_runs):
    p = apply_overrides(get_profile("smoke"), {**TINY, "train.batch_size": 512, "train.classes": (0,)})
    with pytest.raises(executors.RunError, match=r"job 0 \(local job \d+\) failed: .*Error"):
        classifiers.train_all(p, executor="local", workers=1, progress=False)


def test_slurm_parameters_build_a_valid_submission(tmp_path):
    cfg = SlurmConfig(partition="gpu", gpus=1, time_min=600, cpus=8, mem_gb=32)
    params = executors.slurm_parameters(cfg)
    text = executors.sbatch_script(params, tmp_path)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=600",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --job-name=genrobust", "#SBATCH --mem=32GB"):
        assert line in text, line
    with pytest.raises(ConfigError, match="unknown parameter"):
        executors.sbatch_script({**params, "slurm_gpus_per_nod": 2}, tmp_path)
    with pytest.raises(ConfigError, match="slurm.gpus"):
        SlurmConfig(gpus=-1)
    # the default fits a small node: no GPU (no gres asked at all), 1 CPU, 2 GB
    small = executors.sbatch_script(executors.slurm_parameters(get_profile("smoke").slurm), tmp_path)
    assert "gpus" not in small and "#SBATCH --cpus-per-task=1" in small and "#SBATCH --mem=2GB" in small


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_slurm_dry_run_prints_the_script(tmp_runs, command):
    r = subprocess.run([sys.executable, "-m", "genrobust", command, "--profile", "paper", "--executor", "slurm",
                        "--partition", "a100", "--gpus", "1", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "#SBATCH --partition=a100" in r.stdout


def test_resolve_profile_maps_notebook_parameters():
    p = resolve_profile("smoke", dict(epochs=3, width=1.0, objective="combined", eps1=0.2, classes=[2]))
    assert (p.train.epochs, p.model.width, p.train.objective, p.train.eps1, p.train.classes) == (3, 1.0, "combined",
                                                                                                  0.2, (2,))
    with pytest.raises(ConfigError, match="unknown parameter"):
        resolve_profile("smoke", dict(epoch=3))


@pytest.mark.parametrize("args, needle", [
    (["reproduce", "--profile", "bogus"], "unknown profile 'bogus'"),
    (["notebook", "99_nothing", "--profile", "smoke"], "no notebook"),
    (["train", "--profile", "smoke", "-p", "epochs", "-1"], "train.epochs"),
    (["notebook", "01_training", "--profile", "smoke", "-p", "epoch", "1"], "unknown parameter(s) ['epoch']"),
    (["reproduce", "--profile", "smoke", "-p", "epoch", "1"], "unknown parameter(s) ['epoch']"),
    (["reproduce", "--profile", "smoke", "--notebooks", "04_generation,07_extra"], "no notebook '07_extra'"),
])
def test_cli_bad_input_is_one_line_and_nonzero(args, needle, tmp_runs):
    r = subprocess.run([sys.executable, "-m", "genrobust", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_reproduce_gives_each_notebook_only_its_own_parameters(monkeypatch, tmp_runs):
    calls = []
    monkeypatch.setattr(notebooks, "execute_notebook", lambda name, profile, params, force=False: calls.append(
        (name, params)) or name)
    notebooks.reproduce("smoke", ["01", "03_accuracy"], parameters={"epochs": 1, "n_test": 10})
    assert calls == [("01_training", {"epochs": 1}), ("03_accuracy", {"n_test": 10})]


def test_notebook_profile_reads_the_notebooks_own_names():
    ns = {"profile": "smoke", "n_test": 12, "steps": None, "seed": 3, "train_missing": False, "unrelated": 1}
    p = notebook_profile("03_accuracy", ns)
    assert (p.eval.n_test, p.eval.steps, p.eval.seed, p.train.seed) == (12, get_profile("smoke").eval.steps, 3, 0)
    p = notebook_profile("01_training", {"profile": "smoke", "seed": 3, "train_softmax": False})
    assert p.train.seed == 3 and p.eval.seed == get_profile("smoke").eval.seed
    with pytest.raises(ConfigError, match="eval.n_test"):
        notebook_profile("03_accuracy", {"profile": "smoke", "n_test": 0})


@pytest.mark.parametrize("name", sorted(NOTEBOOK_PARAMETERS))
def test_each_notebooks_parameters_cell_declares_exactly_its_mapped_names(name):
    # the one mapping (genrobust.pipeline.params) and the notebooks' first cells must not drift apart
    assert notebooks.notebook_parameters(name) == {"profile"} | set(NOTEBOOK_PARAMETERS[name])


def test_every_notebook_is_known_to_the_pipeline():
    on_disk = {p.stem for p in (notebooks.project_root() / "notebooks").glob("*.ipynb")}
    assert on_disk == set(notebooks.NOTEBOOKS)


def test_notebook_command_prints_only_what_the_user_needs(tmp_runs):
    # no kernel warnings (IPC transport), no progress noise: the executed notebook's path and nothing else
    r = subprocess.run([sys.executable, "-m", "genrobust", "notebook", "06_report", "--profile", "smoke", "--force",
                        "--out-dir", str(tmp_runs / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_runs / "out" / "06_report.ipynb")
    assert "WARNING" not in r.stderr and "TCP" not in r.stderr, r.stderr
