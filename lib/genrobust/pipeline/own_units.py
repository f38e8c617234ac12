"""Running your model's units: in this process, or one job per worker through the local executor, each worker
rebuilding the model from its 'module:factory' spec and refusing weights other than those of the first build.

The units are shared out by their image-steps (:func:`genrobust.pipeline.own_cost.assign`) and stored under the
model's weights digest (runs/eval/<classifier>/), so a killed evaluation resumes, losing only the units in flight.
"""
from __future__ import annotations

import dataclasses

import torch

from ..core.config import Profile, from_dict, to_dict
from ..core.device import default_device
from ..data.splits import prepare_data
from ..measure.accuracy import UnitContext, evaluation_set, prepare_attacks
from ..store.executors import JobSettings, RunError, configure_threads, run_jobs
from ..store.paths import runs_dir
from ..store.units import UnitStore
from .evaluation import ClassifierPlan, compute_units, eval_set_identity
from .own_checks import build_model, classifier_id
from .own_cost import assign


def rebuild_error(spec: str, got: str, first: str) -> str:
    """A factory that built other weights (digest ``got``) than its first build's (``first``), in one line."""
    return (f"{spec}() built weights with digest {got}, not the {first} of its first build: workers rebuild the "
            "model, so the factory must load fixed weights (or seed its initialization), or run with --workers 1")


def _own_units_job(profile_dict: dict, spec: str, input_range: str, expected: str,
                   units: list[tuple[dict, int, int]]) -> int:
    """One worker's share of the units (a job: module level, so the local executor pickles it): rebuild the model
    from its spec, refuse different weights, attack, store. Returns how many units it computed."""
    profile = from_dict(profile_dict)
    configure_threads(profile)
    device = default_device()
    model, desc = build_model(spec, input_range, device)
    if classifier_id(desc) != expected:
        raise RunError(rebuild_error(spec, desc["weights_digest"], expected.split("-")[0]))
    data = prepare_data(profile.data, progress=False)
    x, y = evaluation_set(data, profile.eval, device)
    work, clean = prepare_attacks(model, x, y, profile.eval)
    ctx = UnitContext(UnitStore(runs_dir() / "eval" / expected), expected, eval_set_identity(data, profile.eval))
    return compute_units(work, x, y, clean, ctx, "softmax", units, profile.eval)


def _unit_list(p: ClassifierPlan, idx: list[int]) -> list[tuple[dict, int, int]]:
    return [(dataclasses.asdict(p.units[i][0]), p.units[i][1], p.units[i][2]) for i in idx]


@dataclasses.dataclass(frozen=True)
class Attacked:
    """Your model as this process attacks it, and the images it is evaluated on."""
    work: torch.nn.Module  # the attacked copy (batch norm folded, channels-last: the same function, faster)
    x: torch.Tensor        # (n_test, 3, 32, 32) in [0, 1]
    y: torch.Tensor        # (n_test,) labels
    clean: torch.Tensor    # (n_test,) bool: correct on the clean image


def run_own_units(profile: Profile, p: ClassifierPlan, steps: list[float], here: Attacked, *, spec: str | None,
                  input_range: str, workers: int) -> int:
    """Compute the missing units of your model (``steps``: each unit's image-steps): in this process (one worker,
    on ``here``), or as one job per worker through the local executor (genrobust.store.executors.run_jobs), each
    rebuilding the model from ``spec`` behind ``input_range``; the units shared out by their image-steps."""
    groups = assign(steps, [i for i, d in enumerate(p.done) if not d], workers)
    if not groups:
        return 0
    if workers == 1 or len(groups) == 1:  # nothing to fan out: this process has the model already
        return compute_units(here.work, here.x, here.y, here.clean, p.context, "softmax",
                             _unit_list(p, sum(groups, [])), profile.eval)
    todo = [(to_dict(profile), spec, input_range, p.context.classifier, _unit_list(p, g)) for g in groups]
    return sum(run_jobs(_own_units_job, todo, jobs=JobSettings("local", workers), desc="attack jobs", progress=False))
