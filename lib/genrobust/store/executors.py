"""Jobs: inline, local subprocesses or SLURM via submitit (run_jobs): the driver's loop that submits, watches and
collects them, and cancels them on SIGTERM.

Job executors: run fn(*args) for many argument tuples as independent jobs -- in this process ('inline'), as
local subprocesses through submitit at most ``workers`` at a time ('local'), or on SLURM ('slurm', one job each).
Training, ablation sweeps and evaluation units all fan out through :func:`run_jobs`, with the job settings (executor,
workers, SLURM resources) as one value, :class:`JobSettings` (:meth:`JobSettings.of`: the profile's, each replaced
where a caller gives one).

This module is the driver's loop (submit, watch, collect, cancel on a signal); SLURM's commands are in
:mod:`.slurm`, the in-flight records in :mod:`.inflight`, the errors and the lost-job reports in :mod:`.job_reports`.

What the driver (the process that calls :func:`run_jobs`) guarantees, on SLURM in particular (docs/cluster.md):
- nothing is submitted that no node can run: ``sinfo`` is asked first (:func:`.slurm.check_fits`), and a request
  no node satisfies is refused in one line naming the option to lower;
- it never waits silently: the progress bar shows the jobs' queue states, and a job that left the queue without a
  result (``scancel``, a node lost) or whose state cannot be read is reported after ``slurm.lost_after_s`` in one
  line naming its log, whether or not accounting (``sacct``) can say how it ended;
- a failed job does not stop the others: they finish, then every failure is reported in one line, and a rerun
  redoes only what has no result;
- a run directory with a job in flight is not submitted twice: each submitted job leaves an in-flight record
  (``inflight.json``) in the run directories it writes, and a rerun adopts a SLURM job that is still queued (after
  ``kill -9`` of the driver) instead of submitting another;
- SIGTERM and SIGINT cancel the jobs it submitted or adopted and report which (if any) are still in the queue.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.config import ConfigError, Profile, SlurmConfig
from .inflight import in_flight, release, write_record
from .job_reports import Interrupted, RunError, Tracked, failure, last_line, watch_queue
from .paths import runs_dir
from .slurm import check_fits, queue_states, slurm_parameters

CANCEL_WAIT_S = 45.0        # how long an interrupted driver waits for cancelled jobs to leave the queue (KillWait)
QUEUE_POLL_S = 2.0          # squeue at most this often
EXECUTORS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class JobSettings:
    """How a batch of jobs runs: in this process ('inline'), as local subprocesses at most ``workers`` at a time
    ('local'), or as one SLURM job each with ``slurm``'s resources ('slurm'). ``JobSettings.of(profile)`` reads a
    profile's; the pipeline functions take one as ``jobs`` (None: the profile's)."""
    executor: str = "local"
    workers: int = 1  # jobs side by side on the local executor
    slurm: SlurmConfig = SlurmConfig()  # each SLURM job's resources

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; choose 'inline', 'local' or 'slurm'")

    @classmethod
    def of(cls, profile: Profile, *, executor: str | None = None, workers: int | None = None,
           slurm: SlurmConfig | None = None) -> "JobSettings":
        """The profile's executor, workers and SLURM resources, each replaced where given (None: the profile's):
        the one place a profile's job settings are read."""
        return cls(executor or profile.executor, workers or profile.workers, slurm or profile.slurm)

    @property
    def slots(self) -> int:
        """How many jobs the cost estimates assume side by side: 1 inline, else ``workers``."""
        return 1 if self.executor == "inline" else self.workers


def configure_threads(profile: Profile) -> None:
    """Torch threads for this process (profile.num_threads; None keeps torch's default)."""
    if profile.num_threads:
        torch.set_num_threads(profile.num_threads)


@contextlib.contextmanager
def _signals_noted(caught: list[str]):
    """SIGTERM and SIGINT append their name to ``caught`` instead of stopping the process; the driver's loop
    checks it between steps and cleans up. (Raising from the handler is not safe: an exception raised while
    submitit runs sacct is swallowed by submitit's own error handling.) Previous handlers restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        caught.append(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def make_executor(kind: str, folder: Path, *, slurm: dict | None = None):
    import submitit  # optional at import time: the inline executor runs without it
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=24 * 60)
        return ex
    if kind == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(**(slurm or slurm_parameters()))
        return ex
    raise ConfigError(f"unknown executor {kind!r}; choose 'inline', 'local' or 'slurm'")


def _cancel(running: dict[int, Tracked], executor: str) -> str:
    """Cancel every job still running; for SLURM, wait (at most CANCEL_WAIT_S) for them to leave the queue.
    Returns one clause saying what was cancelled and what is still queued."""
    if not running:
        return "no job was in flight"
    ids = [str(t.job.job_id) for t in running.values()]
    for t in running.values():
        t.job.cancel(check=False)
    if executor != "slurm":
        for t in running.values():
            proc = getattr(t.job, "_process", None)
            with contextlib.suppress(Exception):
                proc and proc.wait(timeout=10)
            release(t.claims, t.job.job_id)
        return f"cancelled local job(s) {', '.join(ids)}"
    left, deadline = ids, time.time() + CANCEL_WAIT_S
    while left and time.time() < deadline:
        time.sleep(1.0)
        states = queue_states(ids)
        left = ids if states is None else [j for j in ids if j in states]
    for t in running.values():
        if str(t.job.job_id) not in left:
            release(t.claims, t.job.job_id)
    tail = "all left the queue" if not left else \
        f"still in the queue: {', '.join(left)} (cancel them with: scancel {' '.join(left)})"
    return f"cancelled SLURM job(s) {', '.join(ids)}; {tail}"


def run_jobs(fn, arg_list: list[tuple], *, jobs: JobSettings = JobSettings(), desc: str = "jobs",
             progress: bool = True, claims: list[list[Path]] | None = None) -> list:
    """Run fn(*args) for each args under ``jobs``; results in order (None for a failed job, after which RunError is
    raised once every other job has finished). Local: at most ``jobs.workers`` subprocesses at once. SLURM: one job
    each, with the resources of ``jobs.slurm``, refused before submission if no node fits them.
    ``claims[i]``: the run directories job i writes; they carry its in-flight record (see the module's doc)."""
    executor, workers, cfg = jobs.executor, jobs.workers, jobs.slurm
    if executor == "inline":
        return [fn(*a) for a in tqdm(arg_list, desc=desc, disable=not progress)]
    # jobs inherit the environment: passive OpenMP waiting keeps parallel jobs from spinning on each other's cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    folder = runs_dir() / "jobs"  # submitit's pickles and every job's log
    claims = claims or [[] for _ in arg_list]
    if executor == "slurm":
        check_fits(cfg)  # before anything is submitted
    adopted = in_flight(claims, executor)
    ex = make_executor(executor, folder, slurm=slurm_parameters(cfg))
    limit = len(arg_list) if executor == "slurm" else max(1, workers)
    kind = "SLURM job" if executor == "slurm" else "local job"
    pending = [i for i in range(len(arg_list)) if i not in adopted]
    running: dict[int, Tracked] = {}
    if adopted:
        from submitit.slurm.slurm import SlurmJob  # optional at import time, as above
        for i, rec in adopted.items():
            running[i] = Tracked(SlurmJob(folder=rec["folder"], job_id=rec["job_id"]), claims[i], "SLURM job",
                                  adopted=True)
        print(f"{desc}: {len(adopted)} job(s) already in flight adopted, not resubmitted: SLURM "
              f"{', '.join(sorted(t.job.job_id for t in running.values()))}", flush=True)
    results: list = [None] * len(arg_list)
    failures: list[str] = []
    bar = tqdm(total=len(arg_list), desc=desc, disable=not progress)
    last_queue = 0.0

    def finish(i: int, why: str | None = None) -> None:
        t = running.pop(i)
        if why is None:
            try:
                results[i] = t.job.result()
            except Exception as e:  # noqa: BLE001 - report which job failed and where its log is
                why = f"failed: {last_line(e)}"
        if why is not None:
            failures.append(failure(i, t, why))
            print(f"{desc}: {failures[-1]}", flush=True)
        release(t.claims, t.job.job_id)
        bar.update(1)

    caught: list[str] = []
    with _signals_noted(caught):
        try:
            while (pending or running) and not caught:
                while pending and len(running) < limit and not caught:
                    i = pending.pop(0)
                    running[i] = Tracked(ex.submit(_job, fn, arg_list[i], claims[i]), claims[i], kind)
                    write_record(running[i], executor)
                if executor == "slurm" and running and time.time() - last_queue >= QUEUE_POLL_S:
                    last_queue = time.time()
                    counts = watch_queue(running, cfg, finish)
                    bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), refresh=True)
                for i, t in list(running.items()):
                    if t.job.done():
                        finish(i)
                time.sleep(0.5)
            if caught:
                raise Interrupted(f"interrupted by {caught[0]}")
        except BaseException as e:  # a signal, a failed submission, a bug: cancel what runs, then say so
            what = _cancel(running, executor)  # further signals are only noted meanwhile
            bar.close()
            if isinstance(e, (Interrupted, KeyboardInterrupt)):
                raise Interrupted(f"{desc}: {e if isinstance(e, Interrupted) else 'interrupted'}; {what}") from None
            raise RunError(f"{desc}: {type(e).__name__}: {last_line(e)}; {what}") from e
    bar.close()
    if failures:
        raise RunError(f"{desc}: {len(failures)} of {len(arg_list)} job(s) failed, the others finished (a rerun redoes "
                       f"only what has no result): " + " | ".join(failures))
    return results


def _job(fn, args: tuple, claims: list[Path]):
    """What each submitted job runs: fn(*args), then (the job side of the in-flight records) its own records in
    ``claims`` removed, so a run whose result is written holds no record even if its driver died meanwhile."""
    result = fn(*args)
    if claims:
        import submitit  # optional at import time, as in make_executor
        release(claims, submitit.JobEnvironment().job_id)
    return result


def call(fn, args):
    """fn(*args): what each job runs, so that jobs of different functions share one executor (a module-level
    function: submitit pickles it)."""
    return fn(*args)
