"""Evaluating your own model with notebook 03's protocol (``genrobust evaluate --model MODULE:FACTORY`` or
:func:`evaluate_model`): the one call that checks it, estimates the cost, runs its units, compares it with ours and
writes the record.

Any ``torch.nn.Module`` that maps (N, 3, 32, 32) images in [0, 1] to (N, 10) logits is attacked like the softmax
baseline under a named evaluation budget (``--budget quick | cpu | standard``, genrobust.core.registry's
EVAL_BUDGETS; without one, the profile's eval settings): the paper's PGD on cross-entropy over the eps grid, the
stronger attacks at the strong eps, the gradient-masking checks, per-example flags and the worst case per eps.

Its parts, one module each: importing and checking the model (:mod:`.own_checks`: the contract, the input range),
the cost estimate, progress and wall-time ledger (:mod:`.own_cost`), running its units over local workers
(:mod:`.own_units`), the record's parts and the comparison with ours (:mod:`.own_record`).

Before any attack runs it prints the budget and a cost estimate: the seconds of one forward+backward pass of your
model per image, measured here on the attacked copy, times the image-steps the budget's units need, spread over the
workers. During the run a progress bar counts image-steps, with the time left. ``workers`` > 1 fans the units out
over local processes through the job executor (each rebuilds the model from its 'module:factory' spec and must get
the same weights digest); a CUDA device is used when present.

Its units are keyed by its weights digest under runs/eval/ like ours, so a killed evaluation (even ``kill -9``)
resumes, losing only the units in flight; the wall time of every leg is kept beside the units, so the record's
wall time is the total across resumes. runs/, cache/ and the record go under the checkout when run inside one,
else under the current directory (or ``out_dir``). Where the profile's classifiers exist (trained, or released with
``from_released``), each is compared with yours on the same images by an exact McNemar test, on the worst case over
the attacks both faced at that eps (never across different attack sets).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.config import Profile, config_hash, replace, to_dict
from ..core.device import default_device
from ..core.models import ModelError
from ..core.registry import EVAL_BUDGETS
from ..data.splits import prepare_data
from ..measure.accuracy import UnitContext, evaluate_classifier, evaluation_set, prepare_attacks
from ..measure.checks import masking_checks
from ..store.executors import JobSettings, RunError
from ..store.io import write_json
from ..store.paths import output_root, outputs_under, runs_dir
from ..store.provenance import provenance
from ..store.units import UnitStore
from .classifiers import ensure_classifiers
from .evaluation import classifier_plan, describe, eval_set_identity, finish_evaluation, plan_evaluation
from .own_checks import (CONTRACT_IMAGES, INPUT_RANGES, PROBE_IMAGES, build_model, check_contract, check_input_range,
                         classifier_id, describe_model, import_model, prepare_model)
from .own_cost import Estimate, WallLedger, Watch, assign, seconds_per_image_step, unit_steps
from .own_record import budget_record, comparison_rows, not_compared_note, per_class_rows, record_path
from .own_units import Attacked, rebuild_error, run_own_units
from .params import EVALUATE_PARAMETERS, resolve_profile

OWN_SCHEMA = 2


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """How :func:`evaluate_model` runs (its keywords, and ``genrobust evaluate --model``'s options)."""
    budget: str | None = None         # a name in EVAL_BUDGETS; None: the profile's eval settings
    parameters: dict | None = None    # ``evaluate -p`` names or dotted config keys, applied after the budget
    name: str | None = None           # the model's name in the record (a module's; default its class name)
    compare: bool = True              # evaluate the profile's classifiers on the same images and pair them with yours
    from_released: bool = False       # ... the released ones (results/<profile>/models/), not the trained ones
    out: str | Path | None = None     # the record's path (default: own_record.record_path)
    out_dir: str | Path | None = None  # where runs/, cache/ and the record go outside a checkout
    workers: int | None = None        # processes sharing the units (None: 1 for a module, the profile's for a spec)
    assume_input_range: str | None = None  # a name in INPUT_RANGES: skip the range check's refusal, feed that range
    progress: bool = True
    echo: Callable[[str], None] = print  # where the budget, the model's line and the estimate are printed

    @property
    def input_range(self) -> str:
        return self.assume_input_range or "0-1"


def evaluate_model(model: torch.nn.Module | str, profile: Profile | str = "cpu", **options) -> dict:
    """Notebook 03's protocol on ``model`` (an nn.Module mapping [0, 1] images to 10 logits, or a
    'module:factory' spec) under the evaluation ``budget`` (a name in EVAL_BUDGETS; None: the profile's eval
    settings), then ``parameters`` (``evaluate -p`` names or dotted config keys), on ``profile``'s data.
    ``options`` are the fields of :class:`EvaluateOptions` (budget, parameters, name, compare, from_released, out,
    out_dir, workers, assume_input_range, progress, echo). The model is put in eval mode with its parameters
    frozen. ``workers`` (None: 1 for a module, the profile's for a spec) processes share the units; more than one
    needs a spec, so each process can rebuild the model. ``assume_input_range`` (a name in INPUT_RANGES) skips the
    refusal of the input-range check and feeds the model that range. With ``compare``, the profile's classifiers
    (trained, or released with ``from_released``) are evaluated on the same images (their units are reused when
    notebook 03 ran) and paired with yours. Returns the record (also written as JSON to ``out``, default
    :func:`genrobust.pipeline.own_record.record_path`)."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(EvaluateOptions)})
    if unknown:
        raise TypeError(f"evaluate_model got unknown option(s) {unknown}; the options are the fields of "
                        f"EvaluateOptions: {', '.join(f.name for f in dataclasses.fields(EvaluateOptions))}")
    opts = EvaluateOptions(**options)
    spec = model if isinstance(model, str) else None
    if spec is None and not isinstance(model, torch.nn.Module):
        raise ModelError(f"evaluate_model needs a torch.nn.Module or a 'module:factory' string, got "
                         f"{type(model).__name__}")
    profile = resolve_profile(profile, opts.parameters, EVALUATE_PARAMETERS, budget=opts.budget)
    workers = opts.workers
    if workers is None:
        workers = 1 if spec is None else JobSettings.of(profile).slots  # the profile's: 1 inline, else its workers
    if workers > 1 and spec is None:
        raise ModelError(f"workers {workers} need the model as a 'module:factory' spec (each process rebuilds it); "
                         "pass the spec, or workers=1")
    if opts.assume_input_range is not None and opts.assume_input_range not in INPUT_RANGES:
        raise ModelError(f"unknown input range {opts.assume_input_range!r} for --assume-input-range; choose one of "
                         f"{', '.join(INPUT_RANGES)}")
    root = output_root(opts.out_dir)
    with outputs_under(root):
        return _evaluate_model(model, spec, profile, dataclasses.replace(opts, workers=workers), root=root, t0=t0)


def _evaluate_model(model, spec: str | None, profile: Profile, opts: EvaluateOptions, *, root: Path,
                    t0: float) -> dict:
    """:func:`evaluate_model` once its inputs are checked (``opts.workers`` resolved), under ``root``."""
    ecfg, device, workers, echo = profile.eval, default_device(), opts.workers, opts.echo
    model, desc = build_model(spec, opts.input_range, device) if spec is not None else \
        prepare_model(model, opts.name or type(model).__name__, opts.input_range, device)
    if workers > 1:  # each worker rebuilds the model: a factory that gives other weights each call fails here
        again = describe_model(import_model(spec), desc["name"], opts.input_range)
        if again["weights_digest"] != desc["weights_digest"]:
            raise ModelError(rebuild_error(spec, again["weights_digest"], desc["weights_digest"]))
    data = prepare_data(profile.data, progress=False)
    px, py = evaluation_set(data, replace(ecfg, n_test=max(PROBE_IMAGES, ecfg.n_test)), device)
    check_contract(model, px[:CONTRACT_IMAGES])
    # the attacked copy (batch norm folded, channels-last: the same function, faster) runs the input-range check
    # on PROBE_IMAGES images and the clean pass; the evaluation set is their first n_test
    work, clean = prepare_attacks(model, px, py, ecfg)
    probe = check_input_range(work, px, py, assumed=opts.assume_input_range, clean=clean)
    here = Attacked(work, px[:ecfg.n_test], py[:ecfg.n_test], clean[:ecfg.n_test])
    ident = classifier_id(desc)
    ctx = UnitContext(UnitStore(runs_dir() / "eval" / ident), ident, eval_set_identity(data, ecfg))
    key = config_hash(_ledger_key(profile, ctx, opts.compare, opts.from_released))
    ledger = WallLedger(ctx.store.directory / f"wall-{key}.json", t0)
    b = EVAL_BUDGETS[opts.budget] if opts.budget else None
    echo(f"budget {b.name}: {b.doc}" if b else f"budget: none named, the {profile.name} profile's eval settings")
    echo(f"yours: {desc['name']} ({desc['class']}, {desc['parameters'] / 1e6:.2f}M parameters, weights digest "
         f"{desc['weights_digest']}, input {INPUT_RANGES[opts.input_range]}); clean accuracy "
         f"{probe['accuracy']['0-1']:.1%} on {probe['n']} images; units in {ctx.store.directory}")

    p = classifier_plan("softmax", spec or desc["name"], ctx, ecfg, len(here.y), here.clean)
    steps = unit_steps(p)
    todo = [i for i, d in enumerate(p.done) if not d]
    groups = assign(steps, todo, workers)
    rate = seconds_per_image_step(work, here.x)
    est = Estimate(rate, sum(steps), len(todo), len(steps), sum(p.to_attack[i] for i in todo), workers,
                   max([sum(steps[i] for i in g) for g in groups], default=0.0) * rate, str(device))
    echo(est.line())
    ours_ev, why = _plan_ours(profile, data, opts) if opts.compare else (None, None)

    t_attack = time.perf_counter()
    with Watch(ledger, p, steps, est, ecfg, progress=opts.progress):
        computed = run_own_units(profile, p, steps, here, spec=spec, input_range=opts.input_range, workers=workers)
    attack_s = time.perf_counter() - t_attack
    with Watch(ledger):
        rec = evaluate_classifier(model, here.x, here.y, ecfg, kind="softmax", progress=False, units=ctx,
                                  prepared=(work, here.clean))
        ours = {} if ours_ev is None else finish_evaluation(ours_ev, jobs=_local_jobs(profile, workers),
                                                            progress=opts.progress)
    wall = ledger.tick()
    rec = rec | {"model": desc["name"], "weights_digest": desc["weights_digest"], "wall_time_s": wall}
    record = {"schema_version": OWN_SCHEMA, "budget": budget_record(profile, opts.budget, opts.parameters),
              "model": desc, "yours": rec, "input_check": probe, "per_class": per_class_rows(rec, here.y),
              "checks": masking_checks({"yours": rec}, ecfg), "comparison": comparison_rows(rec, ours),
              "comparison_note": why,
              "ours": {k: {"checkpoint": v.get("checkpoint"), "n": v["n"]} for k, v in ours.items()},
              "estimate": dataclasses.asdict(est) | {"units_computed_this_leg": computed,
                                                     "attack_seconds_this_leg": round(attack_s, 1)},
              "wall_time_s": wall, "legs": ledger.legs, "eval": to_dict(ecfg),
              "provenance": provenance({"budget": opts.budget, "parameters": opts.parameters or {},
                                        "eval": to_dict(ecfg), "data": to_dict(profile.data),
                                        "compared_with": profile.name},
                                       data_source=data.source, device=device, wall_time_s=wall, model=desc)}
    path = Path(opts.out) if opts.out is not None else record_path(root, opts.out_dir, ident, opts.budget)
    record["path"] = str(write_json(path, record))
    ledger.close()
    return record


def _local_jobs(profile: Profile, workers: int) -> JobSettings:
    """The job settings of an evaluation beside your model's: ``workers`` local processes, or this process for one
    (your model's evaluation never goes to SLURM)."""
    return JobSettings.of(profile, executor="local" if workers > 1 else "inline", workers=workers)


def _plan_ours(profile: Profile, data, opts: EvaluateOptions):
    """(the evaluation plan of the profile's classifiers on the same images, None) -- printed -- or (None, why
    they are not compared) when they are not there."""
    try:
        paths = ensure_classifiers(profile, data=data, train_missing=False, from_released=opts.from_released)
    except (RunError, ValueError) as e:  # ResultsError is a ValueError
        return None, not_compared_note(profile, e, opts.from_released)
    ours_ev = plan_evaluation(profile, data, paths)
    opts.echo("ours, on the same images under the same budget:\n" + describe(
        ours_ev.plans, ours_ev.seconds, ours_ev.source, _local_jobs(profile, opts.workers).slots))
    return ours_ev, None


def _ledger_key(profile: Profile, ctx: UnitContext, compare: bool, from_released: bool) -> dict:
    """What one evaluation is, for its wall-time ledger: the eval settings, the data, what it is compared with."""
    return {"eval": to_dict(profile.eval), "eval_set": ctx.eval_set, "profile": profile.name, "compare": compare,
            "from_released": from_released}
