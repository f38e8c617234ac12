"""What evaluating it costs: the estimate from a measured pass before any attack, the progress bar, the wall time of
every leg across resumes.

What evaluating your model costs: the estimate printed before any attack runs (a measured forward+backward
pass times the image-steps its units need, spread over the workers), the progress bar, and the wall time of every
leg kept across resumes.

The estimate's image-steps come from each attack's registry entry (how many passes it takes per attacked image);
:class:`WallLedger` keeps the legs beside the units (runs/eval/<classifier>/wall-<key>.json), refreshed every
:data:`HEARTBEAT_S` seconds by :class:`Watch`, so a ``kill -9`` loses at most that much of the total.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.cifar10 import NUM_CLASSES
from ..core.registry import attack_spec
from ..store.io import write_json
from .evaluation import ClassifierPlan

STEP_PROBE_BATCH = 16  # images of the timed forward+backward pass of the cost estimate
HEARTBEAT_S = 5.0     # how often the wall-time ledger and the progress bar are refreshed (kill -9 loses <= this)


def seconds_per_image_step(work: torch.nn.Module, x: torch.Tensor, batch: int = STEP_PROBE_BATCH) -> float:
    """Seconds of one forward+backward pass per image through ``work`` (the attacked copy), on ``batch`` images
    of x (the input gradient, as attacks take it): one warm-up pass, then the best of two timed ones."""
    xb = x[:batch].detach().clone()
    times = []
    with torch.enable_grad():
        for i in range(3):
            xg = xb.clone().requires_grad_(True)
            if xb.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.autograd.grad(work(xg).logsumexp(1).sum(), xg)
            if xb.is_cuda:
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
    return min(times) / len(xb)


def unit_steps(p: ClassifierPlan) -> list[float]:
    """Image-steps (forward+backward passes x attacked images) of each unit of ``p``, 0 for done ones."""
    return [0.0 if done else n * attack_spec(run.attack).image_steps(run, NUM_CLASSES)
            for (run, _, _), done, n in zip(p.units, p.done, p.to_attack)]


def assign(costs: list[float], todo: list[int], slots: int) -> list[list[int]]:
    """Longest-processing-time-first: the indices ``todo`` of ``costs`` in at most ``slots`` groups of nearly
    equal sum, each group largest first (one job per worker)."""
    groups, sums = [[] for _ in range(max(1, slots))], [0.0] * max(1, slots)
    for i in sorted(todo, key=lambda i: -costs[i]):
        g = sums.index(min(sums))
        groups[g].append(i)
        sums[g] += costs[i]
    return [g for g in groups if g]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The cost estimate printed before any attack runs."""
    seconds_per_step: float   # forward+backward per image, measured here
    image_steps: float        # of the units still to run
    units: int                # still to run (of ``total_units``)
    total_units: int
    attacked: int             # attacked images of those units
    workers: int
    seconds: float            # the largest worker's share x seconds_per_step
    device: str

    def line(self) -> str:
        if not self.units:
            return f"cost estimate: nothing to run, all {self.total_units} units done"
        return (f"cost estimate: {1000 * self.seconds_per_step:.1f} ms per image-step (forward+backward of your "
                f"model, measured here on {self.device}, {torch.get_num_threads()} thread(s)) x "
                f"{self.image_steps:,.0f} image-steps ({self.units} of {self.total_units} units to run, "
                f"{self.attacked:,} attacked images) = {_duration(self.seconds)} on {self.workers} worker(s) "
                "(attacks that stop early on broken images take less)")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------------------------
# Wall time across resumes, and the progress bar
class WallLedger:
    """The legs of one evaluation (runs/eval/<classifier>/wall-<key hash>.json): each run of the command appends
    a leg and refreshes its seconds every few seconds, so the total across resumes survives ``kill -9`` up to the
    last refresh. Removed once the record is written (a later run is a new evaluation)."""

    def __init__(self, path: Path, t0: float | None = None):
        """``t0``: when this leg started (time.perf_counter(); default now)."""
        self.path, self.t0 = Path(path), time.perf_counter() if t0 is None else t0
        try:
            self.legs = list(json.loads(self.path.read_text())["legs"]) if self.path.is_file() else []
        except (ValueError, KeyError, TypeError):
            self.legs = []  # an unreadable ledger: this leg starts a new one (its record says how many legs)
        self.legs.append({"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                          "seconds": 0.0})
        self.tick()

    def tick(self) -> float:
        self.legs[-1]["seconds"] = round(time.perf_counter() - self.t0, 1)
        write_json(self.path, {"legs": self.legs})
        return self.total

    @property
    def total(self) -> float:
        return round(sum(leg["seconds"] for leg in self.legs), 1)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


class Watch:
    """A background thread that, every :data:`HEARTBEAT_S` seconds, refreshes the wall-time ledger and (with
    ``plan``) the progress bar: image-steps of the units found done in the store, the time left from the estimate
    until a unit is done, then from the pace measured since the start."""

    def __init__(self, ledger: WallLedger, plan: ClassifierPlan | None = None, steps: list | None = None,
                 estimate: Estimate | None = None, ecfg=None, progress: bool = True, desc: str = "yours: attacks"):
        self.ledger, self.plan, self.steps, self.estimate, self.ecfg = ledger, plan, steps, estimate, ecfg
        self.bar = None
        if plan is not None and progress and estimate is not None and estimate.units:
            self.bar = tqdm(total=round(sum(steps)), desc=desc,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} image-steps "
                                       "[{elapsed}{postfix}]")
        self.pending = [i for i, d in enumerate(plan.done) if not d] if plan is not None else []
        self.done_steps, self.t0 = 0.0, time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._refresh()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._refresh()
        if self.bar is not None:
            self.bar.close()

    def _loop(self):
        while not self._stop.wait(HEARTBEAT_S):
            self._refresh()

    def _refresh(self):
        self.ledger.tick()
        if self.plan is None:
            return
        p, still = self.plan, []
        for i in self.pending:
            run, lo, hi = p.units[i]
            if p.context.store.path(p.context.key(p.kind, run, lo, hi, self.ecfg)).is_file():
                self.done_steps += self.steps[i]
            else:
                still.append(i)
        self.pending = still
        if self.bar is None:
            return
        total, elapsed = sum(self.steps), time.perf_counter() - self.t0
        left = (self.estimate.seconds - elapsed if self.done_steps == 0
                else elapsed * (total - self.done_steps) / self.done_steps)
        self.bar.n = round(self.done_steps)
        self.bar.set_postfix_str(f"~{_duration(max(0.0, left))} left", refresh=True)
