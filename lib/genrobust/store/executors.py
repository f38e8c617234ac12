"""Job executors: run fn(*args) for many argument tuples as independent jobs -- in this process ('inline'), as
local subprocesses through submitit at most ``workers`` at a time ('local'), or on SLURM ('slurm', one job each).
Training, ablation sweeps and evaluation units all fan out through :func:`run_jobs`.

What the driver (the process that calls :func:`run_jobs`) guarantees, on SLURM in particular (docs/cluster.md):
- nothing is submitted that no node can run: ``sinfo`` is asked first (:func:`check_fits`), and a request no node
  satisfies is refused in one line naming the option to lower;
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
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..core.config import ConfigError, Profile, SlurmConfig
from .io import read_json, write_json
from .paths import runs_dir

INFLIGHT = "inflight.json"  # in a run directory while a job that writes it is queued or running
CANCEL_WAIT_S = 45.0        # how long an interrupted driver waits for cancelled jobs to leave the queue (KillWait)
QUEUE_POLL_S = 2.0          # squeue at most this often


class RunError(RuntimeError):
    """A job or notebook that failed; the message says where its log is."""


class Interrupted(RunError):
    """The driver got SIGTERM or SIGINT; the message says which jobs it cancelled and which are still queued."""


def configure_threads(profile: Profile) -> None:
    """Torch threads for this process (profile.num_threads; None keeps torch's default)."""
    if profile.num_threads:
        torch.set_num_threads(profile.num_threads)


def slurm_parameters(cfg: SlurmConfig | None = None, *, job_name: str = "genrobust", extra: dict | None = None) -> dict:
    """submitit parameters for one job on SLURM from the profile's ``slurm`` section (validated there)."""
    cfg = cfg or SlurmConfig()
    params = {"slurm_job_name": job_name, "timeout_min": cfg.time_min, "cpus_per_task": cfg.cpus,
              "gpus_per_node": cfg.gpus, "mem_gb": cfg.mem_gb, "nodes": 1, "tasks_per_node": 1}
    if cfg.gpus == 0:
        del params["gpus_per_node"]  # a GPU-less node has no gres: asking for 0 of one is itself refused
    if cfg.partition:
        params["slurm_partition"] = cfg.partition
    params.update(extra or {})
    return params


def sbatch_script(params: dict, folder: Path, command: str = "python -m submitit.core._submit <folder>") -> str:
    """The sbatch file submitit would submit for ``params`` (from :func:`slurm_parameters`), rendered without a
    cluster: a dry run for users (`genrobust train --executor slurm --dry-run`) and a check in tests. Unknown
    parameters fail here, as they would at submission."""
    from submitit.slurm import slurm as _slurm  # optional at import time: only the SLURM path needs it
    equiv = _slurm.SlurmExecutor._equivalence_dict()
    converted = {}
    for key, value in params.items():
        name = key[len("slurm_"):] if key.startswith("slurm_") else equiv.get(key, key)
        converted[name] = _slurm._convert_mem(value) if key == "mem_gb" else value
    valid = set(_slurm._get_default_parameters())
    unknown = sorted(set(converted) - valid)
    if unknown:
        raise ConfigError(f"slurm: unknown parameter(s) {unknown}; see submitit's SlurmExecutor parameters")
    return _slurm._make_sbatch_string(command=command, folder=str(folder), **converted)


# ---------------------------------------------------------------------------------------------------------------
# What the cluster can run (sinfo), asked before anything is submitted
@dataclass(frozen=True)
class Node:
    name: str
    partitions: tuple[str, ...]
    default_partition: str | None  # the cluster's default partition if this node is in it
    cpus: int
    mem_mb: int
    gpus: int
    time_limit_min: tuple[float, ...]  # per partition, in the order of ``partitions``; inf = no limit


SINFO_FORMAT = "%N|%c|%m|%G|%P|%l"


def _minutes(limit: str) -> float:
    """sinfo's time limit ('infinite', 'D-HH:MM:SS', 'HH:MM:SS', 'MM:SS' or 'MM') in minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return float("inf")
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return (int(days) if days else 0) * 1440 + h * 60 + m + s / 60


def _gpus(gres: str) -> int:
    """GPUs in sinfo's gres column, e.g. 'gpu:a100:4(S:0-1),shard:8' -> 4; '(null)' -> 0."""
    return sum(int(m.group(1)) for m in re.finditer(r"(?:^|,)gpu(?::[^:,()]+)?:(\d+)", gres))


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from ``sinfo -h -N -o SINFO_FORMAT`` (one line per node and partition)."""
    rows: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, cpus, mem, gres, part, limit = line.strip().split("|")
        row = rows.setdefault(name, {"parts": [], "default": None, "cpus": int(cpus), "mem": int(mem.rstrip("+")),
                                     "gpus": _gpus(gres), "limit": {}})
        clean = part.rstrip("*")
        row["parts"].append(clean)
        row["limit"][clean] = _minutes(limit)
        if part.endswith("*"):
            row["default"] = clean
    return [Node(n, tuple(r["parts"]), r["default"], r["cpus"], r["mem"], r["gpus"],
                 tuple(r["limit"][p] for p in r["parts"])) for n, r in rows.items()]


def _request(cfg: SlurmConfig) -> str:
    return f"{cfg.gpus} GPU(s), {cfg.cpus} CPU(s), {cfg.mem_gb:g} GB, {cfg.time_min} min"


def check_fits(cfg: SlurmConfig, sinfo_text: str | None = None) -> None:
    """Refuse, in one line naming what to lower, a job request that no node of the partition can satisfy (asked of
    ``sinfo``; ``sinfo_text`` instead for a check without a cluster). A request that fits returns None."""
    if sinfo_text is None:
        if shutil.which("sinfo") is None:
            raise ConfigError("slurm: no `sinfo` on this machine: it is not a SLURM submit host (run where sbatch "
                              "works, or start a local one: tools/slurm_local.sh start; docs/cluster.md)")
        r = subprocess.run(["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise ConfigError(f"slurm: sinfo failed ({(r.stderr or r.stdout).strip().splitlines()[-1:]}); is the "
                              "controller up? (docs/cluster.md)")
        sinfo_text = r.stdout
    nodes = parse_sinfo(sinfo_text)
    part = cfg.partition
    if part is None:
        defaults = {n.default_partition for n in nodes if n.default_partition}
        part = next(iter(defaults)) if defaults else None
        if part is None:
            raise ConfigError("slurm: the cluster has no default partition; name one with --partition "
                              "(or slurm.partition in the profile)")
    members = [n for n in nodes if part in n.partitions]
    if not members:
        known = sorted({p for n in nodes for p in n.partitions})
        raise ConfigError(f"slurm: no partition {part!r} (sinfo lists {known}); choose one with --partition")
    fits = [n for n in members if n.cpus >= cfg.cpus and n.mem_mb >= cfg.mem_gb * 1024 and n.gpus >= cfg.gpus]
    if not fits:
        big = max(members, key=lambda n: (n.gpus, n.cpus, n.mem_mb))
        short = [opt for opt, need, have in (("--gpus", cfg.gpus, big.gpus), ("--cpus", cfg.cpus, big.cpus),
                                             ("--mem", cfg.mem_gb * 1024, big.mem_mb)) if need > have]
        raise ConfigError(f"slurm: no node in partition {part!r} can run a job of {_request(cfg)} (largest: "
                          f"{big.name} with {big.gpus} GPU(s), {big.cpus} CPU(s), {big.mem_mb / 1024:.1f} GB); lower "
                          f"{'/'.join(short) or '--gpus/--cpus/--mem'} (or slurm.* in the profile); nothing was "
                          "submitted")
    limit = max(n.time_limit_min[n.partitions.index(part)] for n in fits)
    if cfg.time_min > limit:
        raise ConfigError(f"slurm: partition {part!r} allows at most {limit:g} min per job, {cfg.time_min} asked; "
                          "lower --time (or slurm.time_min in the profile); nothing was submitted")


# ---------------------------------------------------------------------------------------------------------------
# The queue and in-flight records
def queue_states(job_ids) -> dict[str, str] | None:
    """{job id: state} of those of ``job_ids`` still in SLURM's queue (pending, running, completing); None when
    squeue cannot answer."""
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    try:
        r = subprocess.run(["squeue", "-h", "-o", "%i|%T", "-j", ",".join(ids)], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        # every id already gone (purged after MinJobAge) is an error for squeue, not an empty queue
        return {} if "Invalid job id" in r.stderr else None
    return dict(line.strip().split("|", 1) for line in r.stdout.splitlines() if "|" in line)


def _local_alive(rec: dict) -> bool:
    if rec.get("host") != socket.gethostname():
        return True  # another machine's local job: we cannot tell, so it counts as in flight
    try:
        return "submitit" in Path(f"/proc/{int(rec['job_id'])}/cmdline").read_bytes().decode(errors="ignore")
    except (OSError, ValueError):
        return False


def _read_record(run_dir: Path) -> dict | None:
    try:
        return read_json(run_dir / INFLIGHT)
    except Exception:  # noqa: BLE001 - an unreadable record is a stale one: it is overwritten at submission
        return None


def in_flight(claims: list[list[Path]], executor: str) -> dict[int, dict]:
    """{job index: record} for the jobs whose run directories hold a live in-flight record: SLURM jobs still in
    the queue, to be adopted. A live record that this driver cannot adopt (a local job, or a SLURM job while
    running locally) is an error naming it. Stale records (their job ended) are ignored."""
    adopt: dict[int, dict] = {}
    records = {i: [(d, r) for d in dirs if (r := _read_record(d)) is not None] for i, dirs in enumerate(claims)}
    slurm_ids = [r["job_id"] for recs in records.values() for _, r in recs if r.get("executor") == "slurm"]
    queued = queue_states(slurm_ids) if slurm_ids else {}
    for i, recs in records.items():
        for d, r in recs:
            if r.get("executor") == "slurm":
                if queued is None:
                    raise RunError(f"{d} holds an in-flight record of SLURM job {r['job_id']} and squeue cannot "
                                   "say whether it still runs; retry when the controller answers")
                if r["job_id"] not in queued:
                    continue
                if executor == "slurm":
                    adopt[i] = r
                    break
            elif not _local_alive(r):
                continue
            raise RunError(f"{d} has a job in flight ({r.get('executor')} job {r['job_id']} on {r.get('host')}, "
                           f"submitted {r.get('submitted')}; log {r.get('log')}): wait for it to end or cancel it, "
                           "then rerun")
    return adopt


@dataclass
class _Tracked:
    job: Any                # a submitit Job
    claims: list[Path]
    kind: str = "job"       # how messages name it: 'SLURM job' or 'local job'
    adopted: bool = False
    gone_since: float | None = None  # when the job was first seen out of the queue without a result
    state: str = "SUBMITTED"


def _log(job) -> Path:
    return Path(job.paths.stderr)


def _record(t: _Tracked, executor: str) -> None:
    rec = {"executor": executor, "job_id": str(t.job.job_id), "folder": str(t.job.paths.folder),
           "log": str(_log(t.job)), "host": socket.gethostname(), "driver_pid": os.getpid(),
           "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for d in t.claims:
        write_json(Path(d) / INFLIGHT, rec)


def _release(t: _Tracked) -> None:
    """Remove this job's in-flight records (only those that still name it)."""
    for d in t.claims:
        rec = _read_record(Path(d))
        if rec is not None and rec.get("job_id") == str(t.job.job_id):
            with contextlib.suppress(FileNotFoundError):
                (Path(d) / INFLIGHT).unlink()


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


def _cancel(running: dict[int, _Tracked], executor: str) -> str:
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
            _release(t)
        return f"cancelled local job(s) {', '.join(ids)}"
    left, deadline = ids, time.time() + CANCEL_WAIT_S
    while left and time.time() < deadline:
        time.sleep(1.0)
        states = queue_states(ids)
        left = ids if states is None else [j for j in ids if j in states]
    for t in running.values():
        if str(t.job.job_id) not in left:
            _release(t)
    tail = "all left the queue" if not left else \
        f"still in the queue: {', '.join(left)} (cancel them with: scancel {' '.join(left)})"
    return f"cancelled SLURM job(s) {', '.join(ids)}; {tail}"


def _failure(i: int, t: _Tracked, why: str) -> str:
    return f"job {i} ({t.kind} {t.job.job_id}) {why}; log {_log(t.job)}"


def _last_line(e: BaseException) -> str:
    """The line of a job's error that says what went wrong: the exception line of a traceback that submitit
    wraps (its message ends with log paths), else the message's last line."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return (raised or lines or [type(e).__name__])[-1]


def run_jobs(fn, arg_list: list[tuple], *, executor: str = "local", workers: int = 1,
             slurm: SlurmConfig | None = None, folder: Path | None = None, desc: str = "jobs", progress: bool = True,
             claims: list[list[Path]] | None = None) -> list:
    """Run fn(*args) for each args; results in order (None for a failed job, after which RunError is raised once
    every other job has finished). Local: at most ``workers`` subprocesses at once. SLURM: one job each, with the
    resources of ``slurm`` (default: SlurmConfig()), refused before submission if no node fits them.
    ``claims[i]``: the run directories job i writes; they carry its in-flight record (see the module's doc)."""
    if executor == "inline":
        return [fn(*a) for a in tqdm(arg_list, desc=desc, disable=not progress)]
    # jobs inherit the environment: passive OpenMP waiting keeps parallel jobs from spinning on each other's cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = slurm or SlurmConfig()
    folder = folder or runs_dir() / "jobs"
    claims = claims or [[] for _ in arg_list]
    if executor == "slurm":
        check_fits(cfg)  # before anything is submitted
    adopted = in_flight(claims, executor)
    ex = make_executor(executor, folder, slurm=slurm_parameters(cfg))
    limit = len(arg_list) if executor == "slurm" else max(1, workers)
    kind = "SLURM job" if executor == "slurm" else "local job"
    pending = [i for i in range(len(arg_list)) if i not in adopted]
    running: dict[int, _Tracked] = {}
    if adopted:
        from submitit.slurm.slurm import SlurmJob  # optional at import time, as above
        for i, rec in adopted.items():
            running[i] = _Tracked(SlurmJob(folder=rec["folder"], job_id=rec["job_id"]), claims[i], "SLURM job",
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
                why = f"failed: {_last_line(e)}"
        if why is not None:
            failures.append(_failure(i, t, why))
            print(f"{desc}: {failures[-1]}", flush=True)
        _release(t)
        bar.update(1)

    caught: list[str] = []
    with _signals_noted(caught):
        try:
            while (pending or running) and not caught:
                while pending and len(running) < limit and not caught:
                    i = pending.pop(0)
                    running[i] = _Tracked(ex.submit(fn, *arg_list[i]), claims[i], kind)
                    _record(running[i], executor)
                if executor == "slurm" and running and time.time() - last_queue >= QUEUE_POLL_S:
                    last_queue = time.time()
                    counts = _watch_queue(running, cfg, finish)
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
            raise RunError(f"{desc}: {type(e).__name__}: {_last_line(e)}; {what}") from e
    bar.close()
    if failures:
        raise RunError(f"{desc}: {len(failures)} of {len(arg_list)} job(s) failed, the others finished (a rerun redoes "
                       f"only what has no result): " + " | ".join(failures))
    return results


def _watch_queue(running: dict[int, _Tracked], cfg: SlurmConfig, finish) -> dict[str, int]:
    """One look at the queue: states for the progress bar; a job out of the queue with no result and no end that
    sacct knows, or one whose state cannot be read, is finished as lost after cfg.lost_after_s. Returns
    {queue state: jobs} of those still running."""
    states = queue_states(t.job.job_id for t in running.values())
    now = time.time()
    for i, t in list(running.items()):
        jid = str(t.job.job_id)
        if states is not None and jid in states:
            t.state, t.gone_since = states[jid], None
            continue
        if t.job.paths.result_pickle.exists() or t.job.done(force_check=True):
            continue  # finished (a result, or an end sacct knows): the caller's done() takes it
        t.gone_since = t.gone_since or now
        if now - t.gone_since >= cfg.lost_after_s:
            why = ("left the queue without a result and sacct does not know how it ended" if states is not None
                   else "has a state nobody can read (squeue fails)")
            finish(i, f"{why} ({now - t.gone_since:.0f} s; state {t.job.state})")
    counts: dict[str, int] = {}
    for t in running.values():
        counts[t.state] = counts.get(t.state, 0) + 1
    return counts


def call(fn, args):
    """fn(*args): what each job runs, so that jobs of different functions share one executor (a module-level
    function: submitit pickles it)."""
    return fn(*args)
