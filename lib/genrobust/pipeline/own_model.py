"""Evaluating your own model with notebook 03's protocol (``genrobust evaluate --model MODULE:FACTORY`` or
:func:`evaluate_model`).

Any ``torch.nn.Module`` that maps (N, 3, 32, 32) images in [0, 1] to (N, 10) logits is attacked like the softmax
baseline under a named evaluation budget (``--budget quick | cpu | standard``, genrobust.core.registry's
EVAL_BUDGETS; without one, the profile's eval settings): the paper's PGD on cross-entropy over the eps grid, the
stronger attacks at the strong eps, the gradient-masking checks, per-example flags and the worst case per eps.

Before any attack runs it prints the budget and a cost estimate: the seconds of one forward+backward pass of your
model per image, measured here on the attacked copy, times the image-steps the budget's units need (each attack's
registry entry says how many passes it takes per attacked image), spread over the workers. During the run a
progress bar counts image-steps, with the time left. ``workers`` > 1 fans the units out over local processes through
the job executor (each rebuilds the model from its 'module:factory' spec and must get the same weights digest);
a CUDA device is used when present.

Its units are keyed by its weights digest under runs/eval/ like ours, so a killed evaluation (even ``kill -9``)
resumes, losing only the units in flight; the wall time of every leg is kept beside the units, so the record's
wall time is the total across resumes. runs/, cache/ and the record go under the checkout when run inside one,
else under the current directory (or ``out_dir``). Where the profile's classifiers exist (trained, or released with
``from_released``), each is compared with yours on the same images by an exact McNemar test, on the worst case over
the attacks both faced at that eps (never across different attack sets).

Bad input is one line naming the problem and the fix (:class:`ModelError`): an import that fails, a factory that
is not callable or does not return a module, outputs of the wrong shape or not finite, a model that expects another
input range than [0, 1] (CIFAR mean/std, [-1, 1] or 0-255: found by a paired test on 200 images; ``assume_input_range``
overrides it, converting [0, 1] images to the range named).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..core.cifar10 import NUM_CLASSES
from ..core.config import Profile, config_hash, from_dict, replace, to_dict
from ..core.device import default_device
from ..core.metrics import mcnemar, paired_increase, wilson_interval
from ..core.models import CIFAR10_MEAN, CIFAR10_STD, ModelError
from ..core.registry import EVAL_BUDGETS, attack_spec
from ..data.splits import prepare_data
from ..measure.accuracy import AttackRun, UnitContext, evaluate_classifier, evaluation_set, prepare_attacks
from ..measure.checks import masking_checks
from ..measure.claims import holm
from ..measure.record import EvalRecord
from ..store.checkpoints import state_digest
from ..store.executors import RunError, configure_threads, run_jobs
from ..store.io import write_json
from ..store.paths import checkout_of, output_root, outputs_under, runs_dir
from ..store.provenance import provenance
from ..store.units import UnitStore
from .classifiers import ensure_classifiers
from .evaluation import (ClassifierPlan, classifier_plan, compute_units, describe, eval_set_identity,
                         finish_evaluation, plan_evaluation, slots_of)
from .params import EVALUATE_PARAMETERS, resolve_profile

OWN_SCHEMA = 2
PROBE_IMAGES = 200    # images of the input-range check (and of the contract checks)
RANGE_ALPHA = 0.01    # family-wise level of the input-range check (Holm over the three other conventions)
STEP_PROBE_BATCH = 16  # images of the timed forward+backward pass of the cost estimate
HEARTBEAT_S = 5.0     # how often the wall-time ledger and the progress bar are refreshed (kill -9 loses <= this)

# The input conventions the range check tries: name -> (label, how an image in [0, 1] becomes that convention).
INPUT_RANGES = {
    "0-1": "[0, 1]",
    "cifar-meanstd": "CIFAR-10 mean/std normalized",
    "neg1-1": "[-1, 1]",
    "0-255": "0-255",
}


def to_range(x: torch.Tensor, name: str) -> torch.Tensor:
    """Images x (N, 3, H, W) in [0, 1] in the convention ``name`` of :data:`INPUT_RANGES`."""
    if name == "0-1":
        return x
    if name == "cifar-meanstd":
        mean = torch.tensor(CIFAR10_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std
    if name == "neg1-1":
        return 2 * x - 1
    if name == "0-255":
        return 255 * x
    raise ModelError(f"unknown input range {name!r}; choose one of {', '.join(INPUT_RANGES)}")


class InputRange(torch.nn.Module):
    """``model`` behind a conversion of [0, 1] images into the input range it expects (``--assume-input-range``):
    attacks still perturb [0, 1] images and eps stays in [0, 1] pixel units."""

    def __init__(self, model: torch.nn.Module, name: str):
        super().__init__()
        to_range(torch.zeros(1, 3, 1, 1), name)  # an unknown name fails here, in one line
        self.model, self.input_range = model, name

    def forward(self, x):
        return self.model(to_range(x, self.input_range))


# ---------------------------------------------------------------------------------------------------------------
# The model: import, describe, check
def import_model(spec: str) -> torch.nn.Module:
    """``'package.module:factory'`` or ``'path/to/file.py:factory'`` -> factory(), which must return an
    nn.Module (a module class with no required arguments works too). The code imported is the user's own."""
    if ":" not in spec:
        raise ModelError(f"--model needs MODULE:FACTORY (e.g. mypackage.models:build or models.py:build), got {spec!r}")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ModelError(f"{where}: no such file for --model {spec}; give an existing .py file or a module name")
            loaded = importlib.util.spec_from_file_location(f"genrobust_user_{path.stem}", path)
            module = importlib.util.module_from_spec(loaded)
            sys.modules[loaded.name] = module  # dataclasses and pickling look the module up by name
            loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ModelError:
        raise
    except Exception as e:  # the user's module failed to import: say which and how
        raise ModelError(f"cannot import {where!r} for --model {spec} ({type(e).__name__}: {e}); put its directory "
                         "on PYTHONPATH, or give the file: --model path/to/file.py:FACTORY") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ModelError(f"{where!r} has no attribute {name!r}; name a function or class in it that builds the model")
    if not callable(factory):
        raise ModelError(f"{spec} is a {type(factory).__name__}, not callable; name a function or class that "
                         "returns the model")
    try:
        model = factory()
    except Exception as e:
        raise ModelError(f"calling {spec}() failed ({type(e).__name__}: {e}); the factory must build the model "
                         "with no arguments (load its weights inside)") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module mapping [0, 1] images "
                         "to logits")
    return model


def describe_model(model: torch.nn.Module, name: str, input_range: str = "0-1") -> dict:
    """What the record says about the evaluated model itself: its name (the spec), class, parameter count, weights
    digest (of its state_dict, genrobust.store.checkpoints.state_digest) and the input range it is fed."""
    cls = type(model)
    return {"name": name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": sum(p.numel() for p in model.parameters()),
            "weights_digest": state_digest(model.state_dict()), "input_range": input_range}


def classifier_id(description: dict) -> str:
    """The name its units are kept under: the weights digest, plus the input range when it is not [0, 1] (the
    same weights behind another conversion are another function)."""
    r = description["input_range"]
    return description["weights_digest"] if r == "0-1" else f"{description['weights_digest']}-{r}"


CONTRACT_IMAGES = 16  # images of the shape / finiteness check on the model as given


def check_contract(model: torch.nn.Module, x: torch.Tensor) -> None:
    """(N, 10) finite logits for a batch of [0, 1] images x (N, 3, 32, 32); else one line naming the fix."""
    with torch.no_grad():
        try:
            out = model(x)
        except Exception as e:
            raise ModelError(f"the model failed on a ({len(x)}, 3, 32, 32) batch of [0, 1] images ({type(e).__name__}: "
                             f"{e}); it must take CIFAR-10 images as (N, 3, 32, 32) floats in [0, 1]") from None
    if not isinstance(out, torch.Tensor) or out.shape != (len(x), NUM_CLASSES):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"the model returned {got} for a ({len(x)}, 3, 32, 32) batch; the protocol needs "
                         f"({len(x)}, {NUM_CLASSES}) logits, one per CIFAR-10 class (return the logits tensor)")
    if not torch.isfinite(out).all():
        raise ModelError("the model returned non-finite logits (nan or inf) on clean [0, 1] images; fix the model "
                         "(or its weights) first")


def check_input_range(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, assumed: Optional[str] = None,
                      clean: Optional[torch.Tensor] = None) -> dict:
    """Does the model take [0, 1] images? Its predictions on the first :data:`PROBE_IMAGES` images x (in [0, 1]),
    y in each convention of :data:`INPUT_RANGES` are paired with its predictions on [0, 1] (``clean``: those
    flags when known; one-sided exact McNemar, Holm over the three at :data:`RANGE_ALPHA`); a convention
    significantly more accurate than [0, 1] is a clear winner and the model is refused, in one line naming it and
    ``--assume-input-range``, unless ``assumed`` names the range the caller has put in front of the model already.
    Returns {n, accuracy: {range: fraction}, p_holm: {range: p}, clear_winner, assumed}."""
    x, y = x[:PROBE_IMAGES], y[:PROBE_IMAGES]
    flags = {}
    with torch.no_grad():
        for r in INPUT_RANGES:
            if r == "0-1" and clean is not None:
                flags[r] = clean[:len(y)].cpu()
                continue
            try:
                out = model(to_range(x, r))
            except Exception:  # another convention may break a model that is fine on [0, 1]: it loses the test
                out = None
            ok = isinstance(out, torch.Tensor) and out.shape == (len(x), NUM_CLASSES)
            flags[r] = (out.argmax(1) == y).cpu() if ok else torch.zeros(len(y), dtype=torch.bool)
    acc = {r: float(f.float().mean()) for r, f in flags.items()}
    others = [r for r in INPUT_RANGES if r != "0-1"]
    p = dict(zip(others, holm([paired_increase(flags["0-1"], flags[r])["p"] for r in others])))
    wins = [r for r in others if p[r] < RANGE_ALPHA]
    winner = max(wins, key=lambda r: acc[r]) if wins else None
    if winner is not None and assumed is None:
        raise ModelError(
            f"the model is {acc['0-1']:.0%} accurate on [0, 1] images but {acc[winner]:.0%} on "
            f"{INPUT_RANGES[winner]} ones (same {len(y)} images, paired McNemar, Holm p {p[winner]:.2g}): it expects "
            f"{INPUT_RANGES[winner]} inputs and would be attacked on the wrong scale; rerun with --assume-input-range "
            f"{winner} (genrobust converts [0, 1] images for it), or put the conversion inside the model")
    return {"n": len(y), "accuracy": acc, "p_holm": p, "clear_winner": winner, "assumed": assumed}


def check_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, assumed: Optional[str] = None) -> dict:
    """:func:`check_contract` on the first :data:`PROBE_IMAGES` images, then :func:`check_input_range`."""
    check_contract(model, x[:PROBE_IMAGES])
    return check_input_range(model, x, y, assumed=assumed)


def _frozen(model: torch.nn.Module, device) -> torch.nn.Module:
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks take input gradients only
    return model


def build_model(spec: str, input_range: str, device) -> tuple[torch.nn.Module, dict]:
    """(the model to attack, its description): the factory's module, frozen in eval mode on ``device``, behind the
    input-range conversion when ``input_range`` is not '0-1'."""
    model = import_model(spec)
    return _prepare(model, spec, input_range, device)


def _prepare(model: torch.nn.Module, name: str, input_range: str, device) -> tuple[torch.nn.Module, dict]:
    model = _frozen(model, device)
    desc = describe_model(model, name, input_range)
    return (model if input_range == "0-1" else InputRange(model, input_range).eval()), desc


# ---------------------------------------------------------------------------------------------------------------
# Cost: a measured pass times the image-steps the units need
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

    def __init__(self, path: Path, t0: Optional[float] = None):
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

    def __init__(self, ledger: WallLedger, plan: Optional[ClassifierPlan] = None, steps: Optional[list] = None,
                 estimate: Optional[Estimate] = None, ecfg=None, progress: bool = True, desc: str = "yours: attacks"):
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


# ---------------------------------------------------------------------------------------------------------------
# Running your model's units
def _rebuild_error(spec: str, got: str, first: str) -> str:
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
        raise RunError(_rebuild_error(spec, desc["weights_digest"], expected.split("-")[0]))
    data = prepare_data(profile.data, progress=False)
    x, y = evaluation_set(data, profile.eval, device)
    work, clean = prepare_attacks(model, x, y, profile.eval)
    ctx = UnitContext(UnitStore(runs_dir() / "eval" / expected), expected, eval_set_identity(data, profile.eval))
    return compute_units(work, x, y, clean, ctx, "softmax", units, profile.eval)


def _unit_list(p: ClassifierPlan, idx: list[int]) -> list[tuple[dict, int, int]]:
    return [(dataclasses.asdict(p.units[i][0]), p.units[i][1], p.units[i][2]) for i in idx]


def run_own_units(profile: Profile, p: ClassifierPlan, steps: list[float], work, x, y, clean, *, spec: Optional[str],
                  input_range: str, workers: int) -> int:
    """Compute the missing units of your model: in this process (one worker), or as one job per worker through
    the local executor (genrobust.store.executors.run_jobs), the units shared out by their image-steps."""
    groups = assign(steps, [i for i, d in enumerate(p.done) if not d], workers)
    if not groups:
        return 0
    if workers == 1 or len(groups) == 1:  # nothing to fan out: this process has the model already
        return compute_units(work, x, y, clean, p.context, "softmax", _unit_list(p, sum(groups, [])), profile.eval)
    jobs = [(to_dict(profile), spec, input_range, p.context.classifier, _unit_list(p, g)) for g in groups]
    return sum(run_jobs(_own_units_job, jobs, executor="local", workers=workers, desc="attack jobs",
                        progress=False))


# ---------------------------------------------------------------------------------------------------------------
# The record's parts
def per_class_rows(rec: dict, y: torch.Tensor) -> list[dict]:
    """Accuracy per class, clean and as the worst case at every eps: rows (eps, attacks, class, n, accuracy, ci95)."""
    rows, record = [], EvalRecord.from_dict(rec)
    for e in record.eps_values():
        w = record.worst(e)
        yy = y[:w.n].cpu()
        for k in range(NUM_CLASSES):
            mask = yy == k
            n, r = int(mask.sum()), int(w.flags[mask].sum())
            rows.append({"eps": e, "attacks": list(w.attacks) or ["clean"], "class": k, "n": n,
                         "accuracy": r / n if n else float("nan"), "ci95": wilson_interval(r, n)})
    return rows


def comparison_rows(yours: dict, ours: dict[str, dict]) -> list[dict]:
    """Yours vs each of our classifiers at every eps both ran (exact McNemar on the same images; the worst case over
    the attacks both faced, named in 'attacks')."""
    rows, a = [], EvalRecord.from_dict(yours)
    for kind, rec in ours.items():
        b = EvalRecord.from_dict(rec)
        for e in sorted(set(a.eps_values()) & set(b.eps_values())):
            common = sorted(set(a.attacks_at(e)) & set(b.attacks_at(e)))
            if e > 0 and not common:
                continue  # no attack in common at this eps: nothing comparable
            wa, wb = a.worst(e, common), b.worst(e, common)
            n = min(wa.n, wb.n)
            rows.append({"comparison": f"yours vs {kind}", "ours": kind, "eps": e, "attacks": common or ["clean"],
                         **mcnemar(wa.flags[:n], wb.flags[:n])})
    return rows


def not_compared_note(profile: Profile, error: Exception, from_released: bool) -> str:
    """Why ours were not compared, and the command-line way to compare them."""
    if from_released:
        return (f"not compared: no released {profile.name} models to compare with ({error}); run without "
                "--from-released to use trained ones, or --no-compare")
    return (f"not compared: the {profile.name} profile's classifiers are not trained here; add --from-released to "
            f"compare with the released ones (results/{profile.name}/models/), or --no-compare to skip")


def budget_record(profile: Profile, budget: Optional[str], parameters: Optional[dict]) -> dict:
    """What the record says about the budget: its name and line, or the profile's eval settings; the -p
    parameters given on top."""
    if budget is None:
        return {"name": None, "doc": f"the {profile.name} profile's eval settings", "parameters": parameters or {}}
    b = EVAL_BUDGETS[budget]
    return {"name": b.name, "doc": b.doc, "sized_for": b.sized_for, "parameters": parameters or {}}


def record_path(root: Path, out_dir, ident: str, budget: Optional[str]) -> Path:
    """Where the record goes by default: ``out_dir`` (or the current directory outside a checkout) /
    genrobust-evaluation-<id>-<budget>.json; inside a checkout, its runs/evaluations/ (ignored by git)."""
    name = f"genrobust-evaluation-{ident}-{budget or 'profile'}.json"
    inside = out_dir is None and checkout_of(root) == root
    return (runs_dir() / "evaluations" / name) if inside else root / name


# ---------------------------------------------------------------------------------------------------------------
def evaluate_model(model: torch.nn.Module | str, profile: Profile | str = "cpu", *, budget: str | None = None,
                   parameters: dict | None = None, name: str | None = None, compare: bool = True,
                   from_released: bool = False, out: str | Path | None = None, out_dir: str | Path | None = None,
                   workers: int | None = None, assume_input_range: str | None = None, progress: bool = True,
                   echo=print) -> dict:
    """Notebook 03's protocol on ``model`` (an nn.Module mapping [0, 1] images to 10 logits, or a
    'module:factory' spec) under the evaluation ``budget`` (a name in EVAL_BUDGETS; None: the profile's eval
    settings), then ``parameters`` (``evaluate -p`` names or dotted config keys), on ``profile``'s data. The
    model is put in eval mode with its parameters frozen. ``workers`` (None: 1 for a module, the profile's for a
    spec) processes share the units; more than one needs a spec, so each process can rebuild the model.
    ``assume_input_range`` (a name in INPUT_RANGES) skips the refusal of the input-range check and feeds the model
    that range. With ``compare``, the profile's classifiers (trained, or released with ``from_released``) are
    evaluated on the same images (their units are reused when notebook 03 ran) and paired with yours. Returns the
    record (also written as JSON to ``out``, default :func:`record_path`)."""
    spec = model if isinstance(model, str) else None
    if spec is None and not isinstance(model, torch.nn.Module):
        raise ModelError(f"evaluate_model needs a torch.nn.Module or a 'module:factory' string, got "
                         f"{type(model).__name__}")
    profile = resolve_profile(profile, parameters, EVALUATE_PARAMETERS, budget=budget)
    if workers is None:
        workers = 1 if spec is None or profile.executor == "inline" else profile.workers
    if workers > 1 and spec is None:
        raise ModelError(f"workers {workers} need the model as a 'module:factory' spec (each process rebuilds it); "
                         "pass the spec, or workers=1")
    if assume_input_range is not None and assume_input_range not in INPUT_RANGES:
        raise ModelError(f"unknown input range {assume_input_range!r} for --assume-input-range; choose one of "
                         f"{', '.join(INPUT_RANGES)}")
    root, t0 = output_root(out_dir), time.perf_counter()
    with outputs_under(root):
        return _evaluate_model(model, spec, profile, t0=t0, budget=budget, parameters=parameters, name=name,
                               compare=compare, from_released=from_released, out=out, root=root, out_dir=out_dir,
                               workers=workers, input_range=assume_input_range or "0-1",
                               assumed=assume_input_range, progress=progress, echo=echo)


def _evaluate_model(model, spec, profile: Profile, *, t0, budget, parameters, name, compare, from_released, out, root,
                    out_dir, workers, input_range, assumed, progress, echo) -> dict:
    ecfg, device = profile.eval, default_device()
    model, desc = build_model(spec, input_range, device) if spec is not None else \
        _prepare(model, name or type(model).__name__, input_range, device)
    if workers > 1:  # each worker rebuilds the model: a factory that gives other weights each call fails here
        again = describe_model(import_model(spec), desc["name"], input_range)
        if again["weights_digest"] != desc["weights_digest"]:
            raise ModelError(_rebuild_error(spec, again["weights_digest"], desc["weights_digest"]))
    data = prepare_data(profile.data, progress=False)
    px, py = evaluation_set(data, replace(ecfg, n_test=max(PROBE_IMAGES, ecfg.n_test)), device)
    check_contract(model, px[:CONTRACT_IMAGES])
    # the attacked copy (batch norm folded, channels-last: the same function, faster) runs the input-range check
    # on PROBE_IMAGES images and the clean pass; the evaluation set is their first n_test
    work, clean = prepare_attacks(model, px, py, ecfg)
    probe = check_input_range(work, px, py, assumed=assumed, clean=clean)
    x, y, clean = px[:ecfg.n_test], py[:ecfg.n_test], clean[:ecfg.n_test]
    ident = classifier_id(desc)
    ctx = UnitContext(UnitStore(runs_dir() / "eval" / ident), ident, eval_set_identity(data, ecfg))
    key = config_hash(_ledger_key(profile, ctx, compare, from_released))
    ledger = WallLedger(ctx.store.directory / f"wall-{key}.json", t0)
    b = EVAL_BUDGETS[budget] if budget else None
    echo(f"budget {b.name}: {b.doc}" if b else f"budget: none named, the {profile.name} profile's eval settings")
    echo(f"yours: {desc['name']} ({desc['class']}, {desc['parameters'] / 1e6:.2f}M parameters, weights digest "
         f"{desc['weights_digest']}, input {INPUT_RANGES[input_range]}); clean accuracy {probe['accuracy']['0-1']:.1%} "
         f"on {probe['n']} images; units in {ctx.store.directory}")

    p = classifier_plan("softmax", spec or desc["name"], ctx, ecfg, len(y), clean)
    steps = unit_steps(p)
    todo = [i for i, d in enumerate(p.done) if not d]
    groups = assign(steps, todo, workers)
    rate = seconds_per_image_step(work, x)
    est = Estimate(rate, sum(steps), len(todo), len(steps), sum(p.to_attack[i] for i in todo), workers,
                   max([sum(steps[i] for i in g) for g in groups], default=0.0) * rate, str(device))
    echo(est.line())

    ours_ev, why = None, None
    if compare:
        try:
            paths = ensure_classifiers(profile, data=data, train_missing=False, from_released=from_released)
        except (RunError, ValueError) as e:  # ResultsError is a ValueError
            why = not_compared_note(profile, e, from_released)
        else:
            ours_ev = plan_evaluation(profile, data, paths)
            slots = slots_of(profile, "local" if workers > 1 else "inline", workers)
            echo("ours, on the same images under the same budget:\n" + describe(
                ours_ev.plans, ours_ev.seconds, ours_ev.source, slots))

    t_attack = time.perf_counter()
    with Watch(ledger, p, steps, est, ecfg, progress=progress):
        computed = run_own_units(profile, p, steps, work, x, y, clean, spec=spec, input_range=input_range,
                                 workers=workers)
    attack_s = time.perf_counter() - t_attack
    with Watch(ledger):
        rec = evaluate_classifier(model, x, y, ecfg, kind="softmax", progress=False, units=ctx,
                                  prepared=(work, clean))
        ours = {} if ours_ev is None else finish_evaluation(
            ours_ev, executor="local" if workers > 1 else "inline", workers=workers, progress=progress)
    wall = ledger.tick()
    rec = rec | {"model": desc["name"], "weights_digest": desc["weights_digest"], "wall_time_s": wall}
    record = {"schema_version": OWN_SCHEMA, "budget": budget_record(profile, budget, parameters), "model": desc,
              "yours": rec, "input_check": probe, "per_class": per_class_rows(rec, y),
              "checks": masking_checks({"yours": rec}, ecfg), "comparison": comparison_rows(rec, ours),
              "comparison_note": why,
              "ours": {k: {"checkpoint": v.get("checkpoint"), "n": v["n"]} for k, v in ours.items()},
              "estimate": dataclasses.asdict(est) | {"units_computed_this_leg": computed,
                                                     "attack_seconds_this_leg": round(attack_s, 1)},
              "wall_time_s": wall, "legs": ledger.legs, "eval": to_dict(ecfg),
              "provenance": provenance({"budget": budget, "parameters": parameters or {}, "eval": to_dict(ecfg),
                                        "data": to_dict(profile.data), "compared_with": profile.name},
                                       data_source=data.source, device=device, wall_time_s=wall, model=desc)}
    path = Path(out) if out is not None else record_path(root, out_dir, ident, budget)
    record["path"] = str(write_json(path, record))
    ledger.close()
    return record


def _ledger_key(profile: Profile, ctx: UnitContext, compare: bool, from_released: bool) -> dict:
    """What one evaluation is, for its wall-time ledger: the eval settings, the data, what it is compared with."""
    return {"eval": to_dict(profile.eval), "eval_set": ctx.eval_set, "profile": profile.name, "compare": compare,
            "from_released": from_released}


