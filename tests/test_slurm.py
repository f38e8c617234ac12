"""The cluster path on a real single-node SLURM with accounting (tools/slurm_local.sh; .ci/run starts it before
`make test`): the smoke profile's training and evaluation through the scheduler, and the faults of issue 42, each
ending as docs/cluster.md says -- a request too large for the node is refused before submission; SIGTERM to the
driver cancels its jobs; after `kill -9` of the driver a rerun adopts the jobs still queued instead of submitting
them again; a job cancelled with `scancel` on a cluster whose accounting cannot say how it ended is reported in
one line naming its log, while the other jobs finish; an evaluation's attack units run as SLURM jobs.

Tests run in file order and share one runs/ directory (the evaluation reads the softmax model trained in the
kill -9 scenario). Without a running SLURM they skip, saying so; in CI (CI=true) they fail instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrobust.store.inflight import INFLIGHT
from genrobust.store.slurm import queue_states

pytestmark = pytest.mark.slow

# the smallest smoke training that runs every stage: one epoch on 48 synthetic images per class
TINY = {"data.synthetic_train_per_class": 48, "data.synthetic_test_per_class": 16, "data.val_per_class": 8,
        "train.batch_size": 32, "epochs": 1, "softmax_epochs": 1, "softmax.batch_size": 32, "softmax.width": 0.5,
        # one job per class: these tests count jobs (smoke itself trains fused)
        "train_path": "sequential"}


def _why_no_slurm() -> str | None:
    """None when a controller answers, a node is usable and accounting answers; else what is missing."""
    if shutil.which("sinfo") is None:
        return "no `sinfo` on PATH"
    r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return f"sinfo failed: {r.stderr.strip()[-200:]}"
    if not re.search(r"^(idle|mix|alloc)", r.stdout, re.M):
        return f"no usable node (sinfo: {r.stdout.split()})"
    r = subprocess.run(["sacct", "-n", "-X"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return f"no accounting: sacct failed: {r.stderr.strip()[-200:]}"
    return None


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of a driver: runs/ and results/ in a temporary directory shared by this module's tests."""
    why = _why_no_slurm()
    if why:
        msg = f"no running SLURM with accounting ({why}); start one with `tools/slurm_local.sh start`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: {msg} (.ci/run does this before make test)", pytrace=False)
        pytest.skip(msg)
    tmp = tmp_path_factory.mktemp("slurm")
    return {**os.environ, "GENROBUST_RUNS": str(tmp / "runs"), "GENROBUST_RESULTS": str(tmp / "results"),
            "PYTHONUNBUFFERED": "1"}


def _args(command: str, *extra: str, params: dict | None = None) -> list[str]:
    out = [sys.executable, "-m", "genrobust", command, "--profile", "smoke", "--executor", "slurm", *extra]
    for key, value in (params or {}).items():
        out += ["-p", key, str(value)]
    return out


def _run(env, args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def drivers(env):
    """Start drivers in the background with ``drivers(env, args, name)`` -> (process, its log); any still running
    when the test ends (it failed) is killed and its jobs cancelled, so no test leaves work in the queue."""
    started: list[subprocess.Popen] = []

    def start(env, args, name) -> tuple[subprocess.Popen, Path]:
        log = Path(env["GENROBUST_RUNS"]).parent / f"{name}.log"
        started.append(subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT))
        return started[-1], log

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = [json.loads(p.read_text())["job_id"] for p in Path(env["GENROBUST_RUNS"]).glob(f"*/*/{INFLIGHT}")]
    if left:  # only this module's jobs: those its run directories name
        subprocess.run(["scancel", *left], capture_output=True)


def _records(env, n: int, timeout: float = 90) -> dict[Path, dict]:
    """{run dir: in-flight record} once ``n`` run directories hold one (the driver submitted their jobs)."""
    runs, end = Path(env["GENROBUST_RUNS"]), time.time() + timeout
    while time.time() < end:
        found = {p.parent: json.loads(p.read_text()) for p in runs.glob(f"*/*/{INFLIGHT}")}
        if len(found) >= n:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {n} in-flight records under {runs} after {timeout} s")


def _submitted(env) -> set[str]:
    """Job ids submitit submitted into runs/jobs (one *_submitted.pkl per sbatch)."""
    return {p.name.split("_")[0] for p in (Path(env["GENROBUST_RUNS"]) / "jobs").glob("*_submitted.pkl")}


def test_a_request_no_node_can_run_is_refused_before_submission(env):
    node_mb = max(int(m) for m in subprocess.run(["sinfo", "-h", "-N", "-o", "%m"], capture_output=True, text=True,
                                                 check=True).stdout.split())
    r = _run(env, _args("train", "--classes", "0", "--mem", str(2 * node_mb // 1024 + 1), params=TINY), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "no node in partition" in err[0] and "lower --mem" in err[0], err
    assert "nothing was submitted" in err[0] and _submitted(env) == set()


def test_sigterm_to_the_driver_cancels_its_jobs(env, drivers):
    driver, log = drivers(env, _args("train", "--classes", "0", "--no-softmax", params=TINY), "sigterm")
    (run_dir, rec), = _records(env, 1).items()
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=90) == 2
    out = log.read_text()
    assert "interrupted by SIGTERM" in out and f"cancelled SLURM job(s) {rec['job_id']}; all left the queue" in out, out
    assert queue_states([rec["job_id"]]) == {}  # no orphan in the queue: the driver waited for it to leave
    assert not (run_dir / INFLIGHT).exists() and not (run_dir / "result.json").exists()


def _blind(env, tmp_path) -> dict:
    """``env`` for clients whose slurm.conf has no accounting: the same cluster, but sacct cannot say how a job
    ended (how a cluster without slurmdbd looks to the driver)."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    blind = tmp_path / "slurm.conf"
    blind.write_text(re.sub(r"(?m)^AccountingStorage\w*=.*$", "", conf)
                     + "AccountingStorageType=accounting_storage/none\n")
    out = {**env, "SLURM_CONF": str(blind)}
    assert subprocess.run(["sacct", "-n"], env=out, capture_output=True).returncode != 0  # really blind
    return out


def _wait_for(log: Path, text: str, timeout: float = 90) -> str:
    end = time.time() + timeout
    while time.time() < end:
        if text in (out := log.read_text()):
            return out
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in {log} after {timeout} s:\n{log.read_text()}")


def _queue_empties(ids, timeout: float = 30) -> bool:
    end = time.time() + timeout
    while queue_states(ids) != {}:  # a finished job stays COMPLETING for a moment
        if time.time() > end:
            return False
        time.sleep(0.5)
    return True


def _freeze(job_id: str) -> None:
    """Keep a job in the queue without letting it finish: suspended if it runs, held if it waits (the scheduler's
    own states: a rerun sees it in the queue and adopts it). A job that already ended cannot be frozen: the test
    says so instead of racing it."""
    for how in ("suspend", "hold"):  # it may start between the two
        if subprocess.run(["scontrol", how, job_id], capture_output=True).returncode == 0:
            break
    state = queue_states([job_id]) or {}
    assert state.get(job_id) in ("SUSPENDED", "PENDING"), f"job {job_id} could not be frozen: {state}"


def test_kill_9_then_a_rerun_adopts_the_jobs_and_a_scancelled_one_is_reported(env, tmp_path, drivers):
    """kill -9 of the driver: its jobs run on; a rerun adopts them (nothing is submitted twice, each run directory
    has one writer). Then `scancel` of one adopted job, seen by a driver without accounting: reported in one line
    naming its log after slurm.lost_after_s, while the other jobs finish (the rerun would redo only it)."""
    args = _args("train", "--classes", "0,1", params={**TINY, "slurm.lost_after_s": 5})  # d_0, d_1, softmax
    first, _ = drivers(env, args, "kill9")
    records = _records(env, 3)
    first.kill()
    first.wait(timeout=30)
    ids = {r["job_id"] for r in records.values()}
    assert set(queue_states(ids)) == ids  # the jobs ran on without their driver
    victim = next(d for d in records if d.parent.name == "binary" and records[d]["job_id"] == max(
        (r["job_id"] for p, r in records.items() if p.parent.name == "binary"), key=int))
    _freeze(records[victim]["job_id"])  # the jobs are tiny: the victim must not finish before its scancel
    before = _submitted(env)
    rerun, log = drivers(_blind(env, tmp_path), args, "rerun")
    _wait_for(log, "already in flight adopted, not resubmitted")
    subprocess.run(["scancel", records[victim]["job_id"]], check=True)
    assert rerun.wait(timeout=150) == 2  # today's rerun submits all three again, and then would wait forever
    out = log.read_text()
    errors = [ln for ln in out.splitlines() if ln.startswith("genrobust: error:")]
    assert len(errors) == 1, out
    assert f"SLURM job {records[victim]['job_id']}) left the queue without a result" in errors[0], errors
    # the rerun adopts the jobs still in flight when it starts (3, or fewer where a tiny one finished first)
    assert records[victim]["log"] in errors[0] and re.search(r"1 of [123] job\(s\) failed, the others finished",
                                                             errors[0]), errors
    assert _submitted(env) == before  # nothing submitted twice
    for run_dir in records:
        assert not (run_dir / INFLIGHT).exists()
        if run_dir != victim:
            epochs = [ln for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
            assert len(epochs) == 1 and (run_dir / "result.json").exists(), epochs  # one writer, finished
    assert not (victim / "result.json").exists()
    assert _queue_empties(ids)


def test_evaluation_runs_through_the_scheduler(env):
    soft = sorted(Path(env["GENROBUST_RUNS"]).glob("softmax/*/best.pt"))
    assert soft, "the kill -9 scenario trains the softmax baseline this evaluates"
    before = _submitted(env)
    r = _run(env, _args("evaluate", "--checkpoint", str(soft[0]),
                        params={"n_test": 20, "n_strong": 10, "eval.units_per_job": 100}))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PGD-CE" in r.stdout and "masking" in r.stdout
    assert len(_submitted(env) - before) >= 1  # its attack units ran as SLURM jobs
