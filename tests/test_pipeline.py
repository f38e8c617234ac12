"""Batch runs: the local executor end to end (real subprocesses), SLURM job parameters, CLI errors."""
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrobust.cli import build_parser, main
from genrobust.pipeline import classifiers, notebooks
from genrobust.pipeline.params import NOTEBOOK_PARAMETERS, notebook_profile, resolve_profile
from genrobust.store import executors, inflight, slurm
from genrobust.store.executors import JobSettings
from genrobust.store.io import write_json
from genrobust.core.device import default_device
from genrobust.core.config import ConfigError, SlurmConfig, apply_overrides, get_profile

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data.synthetic_train_per_class": 48, "data.synthetic_test_per_class": 16, "data.val_per_class": 8,
        "train.batch_size": 32, "train.epochs": 1, "train.classes": (0, 1), "softmax.epochs": 1,
        "softmax.batch_size": 32, "softmax.width": 0.5,
        # one job per class: these tests count jobs (smoke itself trains fused)
        "train_path": "sequential"}
INLINE, LOCAL_2 = JobSettings("inline"), JobSettings("local", workers=2)  # the profile's slurm: unused by both


@pytest.mark.slow
def test_local_executor_trains_classes_and_softmax_in_subprocesses(tmp_runs):
    p = apply_overrides(get_profile("smoke"), TINY)
    rows, soft = classifiers.train_all(p, softmax=True, jobs=LOCAL_2, progress=False)
    assert [r["k"] for r in rows] == [0, 1]
    for r in rows:
        assert r["metrics"][-1]["epoch"] == 1 and r["checkpoint"].endswith("best.pt")
    assert soft["metrics"][-1]["epoch"] == 1
    # the jobs ran as separate processes: submitit left their logs
    logs = list((tmp_runs / "runs" / "jobs").glob("*_log.out"))
    assert len(logs) == 3
    # and a second call reuses them (no new jobs)
    rows2, _ = classifiers.train_all(p, softmax=True, jobs=LOCAL_2, progress=False)
    assert rows2 == rows and len(list((tmp_runs / "runs" / "jobs").glob("*_log.out"))) == 3


def test_fused_training_path_is_one_job(tmp_runs, monkeypatch):
    p = apply_overrides(get_profile("smoke"), {**TINY, "train_path": "fused"})
    assert classifiers.training_path(p) == "fused"
    assert classifiers.training_path(apply_overrides(p, {"train_path": "auto"})) == (
        "fused" if default_device().type == "cuda" else "sequential")
    calls = []
    real = classifiers._fused_job
    monkeypatch.setattr(classifiers, "_fused_job", lambda *a: calls.append(a[1]) or real(*a))
    rows = classifiers.train_all(p, jobs=INLINE, progress=False)
    assert calls == [[0, 1]] and [r["k"] for r in rows] == [0, 1]
    assert all(r["path"] == "fused (2 models)" for r in rows)
    with pytest.raises(ConfigError, match="train_path"):
        apply_overrides(p, {"train_path": "grouped"})



def test_job_settings_are_the_profiles_unless_given():
    p = apply_overrides(get_profile("smoke"), {"executor": "local", "workers": 3, "slurm.gpus": 1})
    jobs = JobSettings.of(p)
    assert (jobs.executor, jobs.workers, jobs.slurm.gpus) == ("local", 3, 1) and jobs.slurm == p.slurm
    assert JobSettings.of(p, executor="inline", workers=2) == JobSettings("inline", 2, p.slurm)  # each one replaced
    assert JobSettings.of(p, slurm=SlurmConfig()).slurm.gpus == 0
    assert (jobs.slots, JobSettings.of(p, executor="inline").slots) == (3, 1)  # inline: one job at a time
    with pytest.raises(ConfigError, match="unknown executor 'lokal'; choose 'inline', 'local' or 'slurm'"):
        JobSettings("lokal")

@pytest.mark.slow
def test_failed_job_is_reported(tmp_runs):
    p = apply_overrides(get_profile("smoke"), {**TINY, "train.batch_size": 512, "train.classes": (0,)})
    with pytest.raises(executors.RunError, match=r"job 0 \(local job \d+\) failed: .*Error"):
        classifiers.train_all(p, jobs=JobSettings("local", 1), progress=False)


def test_slurm_parameters_build_a_valid_submission(tmp_path):
    cfg = SlurmConfig(partition="gpu", gpus=1, time_min=600, cpus=8, mem_gb=32)
    params = slurm.slurm_parameters(cfg)
    text = slurm.sbatch_script(params, tmp_path)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=600",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --job-name=genrobust", "#SBATCH --mem=32GB"):
        assert line in text, line
    with pytest.raises(ConfigError, match="unknown parameter"):
        slurm.sbatch_script({**params, "slurm_gpus_per_nod": 2}, tmp_path)
    with pytest.raises(ConfigError, match="slurm.gpus"):
        SlurmConfig(gpus=-1)
    # the default fits a small node: no GPU (no gres asked at all), 1 CPU, 2 GB
    small = slurm.sbatch_script(slurm.slurm_parameters(get_profile("smoke").slurm), tmp_path)
    assert "gpus" not in small and "#SBATCH --cpus-per-task=1" in small and "#SBATCH --mem=2GB" in small


@pytest.mark.slow
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
def test_cli_bad_input_is_one_line_and_nonzero(args, needle, tmp_runs, capsys):
    """In this process (cli.main, what the entry point calls): each case refused before any work starts. The entry
    point itself, `python -m genrobust` in a process of its own, is the next test."""
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own refusals exit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_entry_point_refuses_bad_input_in_one_line():
    r = subprocess.run([sys.executable, "-m", "genrobust", "reproduce", "--profile", "smoke", "--notebooks",
                        "04_generation,07_extra"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "no notebook '07_extra'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


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


@pytest.mark.slow
def test_notebook_command_prints_only_what_the_user_needs(tmp_runs):
    # no kernel warnings (IPC transport), no progress noise: the executed notebook's path and nothing else
    r = subprocess.run([sys.executable, "-m", "genrobust", "notebook", "06_report", "--profile", "smoke", "--force",
                        "--out-dir", str(tmp_runs / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_runs / "out" / "06_report.ipynb")
    assert "WARNING" not in r.stderr and "TCP" not in r.stderr, r.stderr


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_others_and_a_rerun_redoes_only_it(tmp_runs):
    """The softmax job fails (a checkpoint to import that does not exist); the d_0 job still finishes; the rerun
    submits one job."""
    tiny = {**TINY, "train.classes": (0,)}
    bad = apply_overrides(get_profile("smoke"), {**tiny, "softmax.checkpoint": str(tmp_runs / "missing.pt")})
    with pytest.raises(executors.RunError, match=r"1 of 2 job\(s\) failed, the others finished.*job 0 \(local job"):
        classifiers.train_all(bad, softmax=True, jobs=LOCAL_2, progress=False)
    assert classifiers.binary_result(bad, 0) is not None
    submitted = lambda: len(list((tmp_runs / "runs" / "jobs").glob("*_submitted.pkl")))  # noqa: E731
    assert submitted() == 2
    classifiers.train_all(apply_overrides(get_profile("smoke"), tiny), softmax=True, jobs=LOCAL_2, progress=False)
    assert submitted() == 3  # only the failed job ran again


def test_train_command_trains_the_softmax_baseline_that_notebook_01_finds(tmp_runs, capsys):
    args = ["train", "--profile", "smoke", "--executor", "inline", "--classes", "0"]
    for key, value in TINY.items():
        args += ["-p", key, str(value)] if key != "train.classes" else []
    assert main(args) == 0, capsys.readouterr().err
    p = resolve_profile("smoke", {**TINY, "classes": (0,)})
    soft = classifiers.softmax_result(p)
    assert soft is not None and f"softmax: best epoch 1 -> {soft['checkpoint']}" in capsys.readouterr().out
    # notebook 01's call finds it (and d_0) instead of training them again
    rows, found = classifiers.train_all(p, softmax=True, jobs=INLINE, progress=False)
    assert found == soft and rows[0]["k"] == 0


SINFO_SMALL = "vm|2|3900|(null)|debug*|infinite\n"  # sinfo -h -N -o SINFO_FORMAT of a 2-CPU, 3.9 GB node
SINFO_GPU = "g1|32|256000|gpu:a100:4(S:0-1)|gpu|3-00:00:00\ng1|32|256000|gpu:a100:4(S:0-1)|debug*|1:00:00\n"


def test_a_request_the_cluster_cannot_satisfy_is_refused_in_one_line():
    slurm.check_fits(SlurmConfig(), SINFO_SMALL)  # the defaults fit a small node
    slurm.check_fits(get_profile("paper").slurm, SINFO_GPU.replace("debug*", "debug").replace("|gpu|", "|gpu*|"))
    for cfg, option in ((SlurmConfig(mem_gb=32), "--mem"), (SlurmConfig(cpus=8), "--cpus"),
                        (SlurmConfig(gpus=1), "--gpus")):
        with pytest.raises(ConfigError, match=f"no node in partition 'debug' .* lower {option} ") as e:
            slurm.check_fits(cfg, SINFO_SMALL)
        assert "\n" not in str(e.value) and "nothing was submitted" in str(e.value)
    with pytest.raises(ConfigError, match="allows at most 60 min per job"):  # the default partition's limit
        slurm.check_fits(SlurmConfig(gpus=1, time_min=120), SINFO_GPU)
    slurm.check_fits(SlurmConfig(gpus=4, partition="gpu", time_min=4320), SINFO_GPU)
    with pytest.raises(ConfigError, match="no partition 'a100'"):
        slurm.check_fits(SlurmConfig(partition="a100"), SINFO_GPU)


def test_cli_resource_options_override_the_profile(tmp_runs, capsys):
    assert main(["train", "--profile", "smoke", "--executor", "slurm", "--mem", "0.5", "--cpus", "2", "--time", "15",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    for line in ("#SBATCH --mem=512MB", "#SBATCH --cpus-per-task=2", "#SBATCH --time=15"):
        assert line in out, line


def test_a_live_in_flight_record_is_not_submitted_twice(tmp_runs):
    """A run directory whose record names a local job that is still alive is refused; a stale record is not."""
    run_dir = tmp_runs / "runs" / "binary" / "abc"
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit"])  # a job's argv
    cmdline = Path(f"/proc/{job.pid}/cmdline")
    while b"submitit" not in cmdline.read_bytes():  # between fork and exec it still shows pytest's
        time.sleep(0.01)
    try:
        write_json(run_dir / inflight.INFLIGHT, {"executor": "local", "job_id": str(job.pid),
                                                            "host": socket.gethostname(), "log": "x.err"})
        with pytest.raises(executors.RunError, match=r"abc has a job in flight \(local job"):
            inflight.in_flight([[run_dir]], "local")
    finally:
        job.kill()
        job.wait()
    assert inflight.in_flight([[run_dir]], "local") == {}  # its job ended: stale, overwritten at submission


@pytest.mark.slow
def test_a_finished_job_removes_its_own_in_flight_records(tmp_runs):
    """The job side: a job whose function returned removes the records in its run directories that name it,
    with no driver collecting it (as after kill -9 of the driver); a record naming another job stays, and a job
    whose function raised leaves its record (the driver's release, or a rerun's staleness check, handles it)."""
    dirs = [tmp_runs / "runs" / "binary" / n for n in ("ok", "other", "failed")]
    ex = executors.make_executor("local", tmp_runs / "runs" / "jobs")
    ok = executors.Tracked(ex.submit(executors._job, time.sleep, (1.0,), dirs[:2]), dirs[:1])
    failed = executors.Tracked(ex.submit(executors._job, math.sqrt, (-1.0,), dirs[2:]), dirs[2:])
    inflight.write_record(ok, "local")
    inflight.write_record(failed, "local")
    write_json(dirs[1] / inflight.INFLIGHT, {"executor": "local", "job_id": "someone-else"})
    assert ok.job.result() is None  # the sleep: records are written (as by the driver) well before it ends
    with pytest.raises(Exception, match="math domain error"):
        failed.job.result()
    assert not (dirs[0] / inflight.INFLIGHT).exists()  # removed by the job itself: no driver called release
    assert (dirs[1] / inflight.INFLIGHT).exists()      # not this job's record
    assert (dirs[2] / inflight.INFLIGHT).exists()      # the failed job's record stays for the driver


RESOURCE_OPTIONS = ("--partition", "--gpus", "--cpus", "--mem", "--time")


def cluster_doc_gaps(text: str) -> list[str]:
    """What docs/cluster.md must say (issue 42) and ``text`` does not: the accounting requirement, the local
    cluster's script, every resource option the train command has, and what each injected fault does."""
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {o for a in train._actions for o in a.option_strings}
    needed = ["sacct", "slurmdbd", "tools/slurm_local.sh", "lost_after_s", "inflight.json", "scancel", "kill -9",
              "SIGTERM", "nothing was submitted", *RESOURCE_OPTIONS]
    return [n for n in needed if n not in text] + [o for o in RESOURCE_OPTIONS if o not in options]


def test_cluster_doc_says_accounting_resources_and_faults():
    assert cluster_doc_gaps((ROOT / "docs" / "cluster.md").read_text()) == []
    assert "sacct" in cluster_doc_gaps("--partition --gpus --cpus --time: a doc without the rest")  # control
