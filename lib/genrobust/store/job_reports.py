"""What the job driver says about its jobs: the errors it raises (RunError, Interrupted), a failed job in one line
naming its log, and the queue watch that reports a SLURM job lost from the queue.

A job is :class:`Tracked` from submission (or adoption) until it ends; :func:`watch_queue` reads its queue state for
the progress bar and finishes it as lost after ``slurm.lost_after_s`` when it left the queue without a result and
``sacct`` cannot say how it ended, or when ``squeue`` cannot answer (docs/cluster.md).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import SlurmConfig
from .slurm import queue_states


class RunError(RuntimeError):
    """A job or notebook that failed; the message says where its log is."""


class Interrupted(RunError):
    """The driver got SIGTERM or SIGINT; the message says which jobs it cancelled and which are still queued."""


@dataclass
class Tracked:
    """A job the driver submitted or adopted, until it ends."""
    job: Any                # a submitit Job
    claims: list[Path]      # the run directories it writes (they hold its in-flight record)
    kind: str = "job"       # how messages name it: 'SLURM job' or 'local job'
    adopted: bool = False
    gone_since: float | None = None  # when the job was first seen out of the queue without a result
    state: str = "SUBMITTED"


def log_of(job) -> Path:
    """The job's log (submitit's stderr file), named by every message about it."""
    return Path(job.paths.stderr)


def failure(i: int, t: Tracked, why: str) -> str:
    """Job ``i`` failed: one line saying why, naming its log."""
    return f"job {i} ({t.kind} {t.job.job_id}) {why}; log {log_of(t.job)}"


def last_line(e: BaseException) -> str:
    """The line of a job's error that says what went wrong: the exception line of a traceback that submitit
    wraps (its message ends with log paths), else the message's last line."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return (raised or lines or [type(e).__name__])[-1]


def watch_queue(running: dict[int, Tracked], cfg: SlurmConfig, finish) -> dict[str, int]:
    """One look at the queue: states for the progress bar; a job out of the queue with no result and no end that
    sacct knows, or one whose state cannot be read, is finished as lost (``finish(i, why)``) after
    cfg.lost_after_s. Returns {queue state: jobs} of those still running."""
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
