"""How an evaluation runs: notebook 03 and ``genrobust evaluate`` planned as keyed, resumable units, costed, fanned out
as jobs and assembled (what each unit computes is genrobust.measure.accuracy).

The work of an evaluation (:mod:`genrobust.measure.accuracy`) is units: one attack run over one shard of the
evaluation order for one classifier, keyed by the classifier's weights digest, the evaluation set, the attack's
settings, eps, the shard and the seeds (:func:`genrobust.measure.accuracy.unit_key`), each a file under
``runs/eval/<weights digest>/`` (:class:`genrobust.store.units.UnitStore`). :func:`evaluate`:

1. plans every unit and says, before anything runs, how many are done, how many remain, how many images they
   attack and how long that should take (from the per-image rates of units already done, else a short probe);
2. runs the missing units as jobs through the profile's executor -- in this process ('inline'), as local worker
   processes ('local'), or on SLURM ('slurm', one job per ``eval.units_per_job`` units);
3. assembles each classifier's record from its units (nothing is recomputed).

A killed evaluation (even ``kill -9``) loses only the units in flight; run it again and it continues.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.config import EvalConfig, Profile, from_dict, to_dict
from ..core.device import default_device
from ..core.registry import attack_spec
from ..data.splits import Prepared, prepare_data
from ..measure.accuracy import (AttackRun, UnitContext, attack_unit, evaluate_classifier, evaluation_set, plan_runs,
                                prepare_attacks, run_attack, shards)
from ..store.checkpoints import load_classifier, weights_digest
from ..store.executors import JobSettings, configure_threads, run_jobs
from ..store.paths import runs_dir
from ..store.units import UnitStore


def eval_set_identity(data: Prepared, ecfg: EvalConfig) -> dict:
    """What determines the evaluation images and their order: the data (its sha256, or for synthetic data its
    generator record), the split, and the permutation seed."""
    return {**data.identity(), "seed": ecfg.seed}


def unit_context(checkpoint: str | Path, data: Prepared, ecfg: EvalConfig) -> UnitContext:
    digest = weights_digest(checkpoint)
    return UnitContext(UnitStore(runs_dir() / "eval" / digest), digest, eval_set_identity(data, ecfg))


@dataclass
class ClassifierPlan:
    """The units of one classifier: each (run, lo, hi), whether it is done, and the images it attacks."""
    kind: str
    checkpoint: str
    context: UnitContext
    units: list[tuple[AttackRun, int, int]] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)
    to_attack: list[int] = field(default_factory=list)  # clean-correct examples in each unit (the attacked ones)


def classifier_plan(kind: str, checkpoint: str, context: UnitContext, ecfg: EvalConfig, n: int,
                    clean: torch.Tensor) -> ClassifierPlan:
    """Every unit of one classifier on the first ``n`` evaluation images, marked done or not; ``clean``: its
    clean-correct flags (how many images each unit attacks). ``checkpoint`` names where the classifier comes from
    (a path, or a 'module:factory' spec for your own model)."""
    p = ClassifierPlan(kind, str(checkpoint), context)
    for run in plan_runs(kind, ecfg, n):
        for lo, hi in shards(run.n, ecfg.shard_size):
            p.units.append((run, lo, hi))
            p.done.append(context.lookup(kind, run, lo, hi, ecfg) is not None)
            p.to_attack.append(int(clean[lo:hi].sum()))
    return p


def plan(profile: Profile, data: Prepared, paths: dict[str, str], x: torch.Tensor, y: torch.Tensor,
         clean: dict[str, torch.Tensor]) -> dict[str, ClassifierPlan]:
    """Every unit of every classifier in ``paths`` ({kind: checkpoint}), marked done or not. ``clean``: each
    classifier's clean-correct flags over the evaluation set (how many images each unit attacks)."""
    e = profile.eval
    return {kind: classifier_plan(kind, path, unit_context(path, data, e), e, len(y), clean[kind])
            for kind, path in paths.items()}


def _settings(run: AttackRun) -> tuple:
    return (run.attack, run.eps, run.steps, run.step_size, run.restarts, run.budgets)


def probe_seconds_per_image(work, x, y, run: AttackRun, ecfg: EvalConfig, n: int = 4) -> float:
    """Seconds per attacked image of ``run`` on ``work``, from a probe on n images with the same per-iteration cost
    and fewer iterations (its registry entry's :meth:`~genrobust.core.registry.AttackSpec.scaled` by
    1 / probe_divisor, scaled back up by the effort ratio; an attack with nothing to scale runs in full), at a tiny
    eps (the attack never stops early): an upper bound."""
    spec = attack_spec(run.attack)
    small = spec.scaled(run, div=spec.probe_divisor)
    probe = dataclasses.replace(run, eps=1e-4, **(small or {}))
    factor = spec.effort(run) / spec.effort(probe)
    t0 = time.perf_counter()
    run_attack(work, x[:n], y[:n], probe, ecfg=ecfg, generator=torch.Generator(device=x.device).manual_seed(0))
    return (time.perf_counter() - t0) * factor / min(n, len(x))


def estimate_seconds(plans: dict[str, ClassifierPlan], works: dict, x, y, ecfg: EvalConfig) -> tuple[float, str]:
    """(seconds of attacks the missing units need in one process, where the rates come from). Rates per attack
    setting: measured on this classifier's finished units of that setting (seconds per attacked image), else a
    probe (:func:`probe_seconds_per_image`; an upper bound: real attacks stop early on broken examples)."""
    total, sources = 0.0, set()
    for kind, p in plans.items():
        need: dict[tuple, int] = {}
        done: dict[tuple, list[float]] = {}
        for (run, lo, hi), is_done, n_att in zip(p.units, p.done, p.to_attack):
            if is_done:
                rec = p.context.lookup(kind, run, lo, hi, ecfg)
                if rec is not None and rec["n_attacked"]:
                    t = done.setdefault(_settings(run), [0.0, 0])
                    t[0] += rec["time_s"]
                    t[1] += rec["n_attacked"]
            else:
                need[_settings(run)] = need.get(_settings(run), 0) + n_att
        for settings, n_att in need.items():
            if not n_att:
                continue
            if settings in done and done[settings][1]:
                rate = done[settings][0] / done[settings][1]
                sources.add("finished units")
            else:
                run = next(r for r, _, _ in p.units if _settings(r) == settings)
                rate = probe_seconds_per_image(works[kind], x, y, run, ecfg)
                sources.add("a probe (upper bound)")
            total += rate * n_att
    return total, " and ".join(sorted(sources)) or "nothing to run"


def describe(plans: dict[str, ClassifierPlan], seconds: float, source: str, slots: int) -> str:
    """One line per classifier and one for the estimate, printed before the attacks start."""
    lines = []
    for kind, p in plans.items():
        miss = [n for n, d in zip(p.to_attack, p.done) if not d]
        lines.append(f"{kind}: {len(p.units)} units, {sum(p.done)} done, {len(miss)} to run "
                     f"({sum(miss):,} attacked images)")
    est = seconds / max(1, slots)
    when = f"{est:.0f} s" if est < 90 else f"{est / 60:.1f} min"
    lines.append(f"estimated attack time: {when} on {slots} worker(s) (rates from {source})")
    return "\n".join(lines)


def compute_units(work, x, y, clean, ctx: UnitContext, kind: str, units: list[tuple[dict, int, int]],
                  ecfg: EvalConfig) -> int:
    """Compute and store ``units`` ((AttackRun as a dict, lo, hi) each) of one classifier's attack copy ``work``;
    units that exist meanwhile are skipped. Returns how many it computed."""
    n = 0
    for run_dict, lo, hi in units:
        run = AttackRun(**run_dict)
        if ctx.lookup(kind, run, lo, hi, ecfg) is None:
            ctx.store.put(ctx.key(kind, run, lo, hi, ecfg), attack_unit(work, x, y, clean, run, lo, hi, ecfg=ecfg))
            n += 1
    return n


def _eval_units_job(profile_dict: dict, kind: str, checkpoint: str, units: list[tuple[dict, int, int]]) -> int:
    """Compute and store ``units`` of one classifier (a job: module level, so local/SLURM executors pickle it);
    units that exist meanwhile are skipped. Returns how many it computed."""
    profile = from_dict(profile_dict)
    configure_threads(profile)
    device = default_device()
    data = prepare_data(profile.data, progress=False)
    x, y = evaluation_set(data, profile.eval, device)
    work, clean = prepare_attacks(load_classifier(checkpoint, device), x, y, profile.eval)
    return compute_units(work, x, y, clean, unit_context(checkpoint, data, profile.eval), kind, units, profile.eval)


def run_missing(profile: Profile, plans: dict[str, ClassifierPlan], *, jobs: JobSettings | None = None,
                progress: bool = True) -> int:
    """Run every missing unit as jobs of at most eval.units_per_job units of one classifier (largest first), under
    ``jobs`` (None: the profile's). Returns the number of jobs."""
    todo = []
    for kind, p in plans.items():
        miss = sorted(((n, u) for u, d, n in zip(p.units, p.done, p.to_attack) if not d),
                      key=lambda t: -t[0])  # most attacked images first: fewer idle workers at the end
        size = profile.eval.units_per_job
        for i in range(0, len(miss), size):
            group = [(dataclasses.asdict(run), lo, hi) for _, (run, lo, hi) in miss[i:i + size]]
            todo.append((to_dict(profile), kind, p.checkpoint, group))
    if todo:
        run_jobs(_eval_units_job, todo, jobs=jobs or JobSettings.of(profile), desc=f"attack units ({len(todo)} jobs)",
                 progress=progress)
    return len(todo)


@dataclass
class Evaluation:
    """One planned evaluation of checkpoints ({kind: path}): the images, the loaded models and their attack copies
    (with clean-correct flags), every unit marked done or not, and the estimate of what remains."""
    profile: Profile
    paths: dict[str, str]
    x: torch.Tensor
    y: torch.Tensor
    models: dict
    prepared: dict
    plans: dict[str, ClassifierPlan]
    seconds: float
    source: str


def plan_evaluation(profile: Profile, data: Prepared, paths: dict[str, str]) -> Evaluation:
    """Load the checkpoints of ``paths``, plan their units and estimate the missing ones' cost (nothing runs)."""
    e = profile.eval
    x, y = evaluation_set(data, e)
    models = {kind: load_classifier(path) for kind, path in paths.items()}
    prepared = {kind: prepare_attacks(m, x, y, e) for kind, m in models.items()}
    plans = plan(profile, data, paths, x, y, {k: c for k, (_, c) in prepared.items()})
    seconds, source = estimate_seconds(plans, {k: w for k, (w, _) in prepared.items()}, x, y, e)
    return Evaluation(profile, dict(paths), x, y, models, prepared, plans, seconds, source)


def finish_evaluation(ev: Evaluation, *, jobs: JobSettings | None = None, progress: bool = True) -> dict[str, dict]:
    """Run ``ev``'s missing units as jobs (``jobs``; None: the profile's), then assemble {kind: evaluation record}
    from the units."""
    e = ev.profile.eval
    run_missing(ev.profile, ev.plans, jobs=jobs, progress=progress)
    return {kind: evaluate_classifier(ev.models[kind], ev.x, ev.y, e, kind=kind, progress=False,
                                      units=ev.plans[kind].context, prepared=ev.prepared[kind])
            | {"checkpoint": str(ev.paths[kind])} for kind in ev.paths}


def evaluate(profile: Profile, data: Prepared, paths: dict[str, str], *, jobs: JobSettings | None = None,
             progress: bool = True, echo=print) -> dict[str, dict]:
    """{kind: evaluation record} of every checkpoint in ``paths`` ({kind: path}), from units: plan, say what
    remains and what it costs (``echo``), run the missing units as jobs (``jobs``; None: the profile's), assemble."""
    jobs = jobs or JobSettings.of(profile)
    ev = plan_evaluation(profile, data, paths)
    echo(describe(ev.plans, ev.seconds, ev.source, jobs.slots))
    return finish_evaluation(ev, jobs=jobs, progress=progress)
