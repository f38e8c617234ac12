"""What an evaluation computes: clean / robust accuracy under the paper's attacks (Eq. 10, Eq. 11-12), AutoAttack and
multi-targeted, per-example worst case, Wilson CIs, paired McNemar tests (Tab. 1, Fig. 1); its units (one attack run
over one shard; run by genrobust.pipeline.evaluation).

Clean and robust accuracy of a classifier (Section 3.2, Tab. 1, Fig. 1): the paper's protocol (PGD on
cross-entropy, Eq. 10, for the softmax classifier; the adaptive attack of Eq. 11-12 for the generative one) over an
eps grid, AutoAttack's standard attacks and the multi-targeted margin attack at one eps, the extra runs of the
masking checks (:mod:`genrobust.measure.checks`), and the per-example worst case over all of them.

An evaluation record (:func:`evaluate_classifier`) is plain JSON: per run the attack, its settings and the robust
flags of every example as a '0'/'1' string, so tables, worst cases and checks can be rebuilt from the results file
without rerunning anything. Runs evaluate a *prefix* of one seeded permutation of the test set (the paper's attacks
the first n_test images, the strong attacks and masking runs the first n_strong), so any two runs share their first
min(n) examples and the worst case per example is well defined there. Which attacks exist, their labels and which
classifier each applies to, and each attack's settings (its budgets, what goes into its unit keys and records, how
'more steps' scales it) come from the registry (:data:`genrobust.core.registry.ATTACKS`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.compiling import maybe_compile
from ..core.config import EvalConfig, budget_values
from ..core.fold import folded_copy
from ..core.stats import mcnemar, wilson_interval
from ..core.models import GenerativeClassifier
from ..core.registry import ATTACKS, CLASSIFIER_KINDS, PAPER_ATTACK, AttackCall, attack_spec
from ..core.upgrade import unit_key_before_budgets
from ..data.batches import to_float
from ..store.checkpoints import load_classifier
from ..store.units import UnitStore
from .record import flags_to_str, records, str_to_flags


class EvaluationError(RuntimeError):
    """An attack broke its contract (perturbation outside the eps-ball or [0, 1]) or an unknown attack name."""


def classifier_kind(model) -> str:
    """'generative' for a GenerativeClassifier (Eq. 7), else 'softmax'."""
    return "generative" if isinstance(model, GenerativeClassifier) else "softmax"


def eval_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """The first min(n, n_total) indices of a seeded permutation of range(n_total): (n,) int64. Prefixes of it are
    the smaller evaluation sets, so every set is a subset of every larger one."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_total, generator=g)[:min(n, n_total)]


@dataclass(frozen=True)
class AttackRun:
    """One attack at one eps on the first ``n`` examples. ``role``: 'paper' (Sec. 3.2 protocol), 'strong'
    (AutoAttack / multi-targeted), or a masking check ('more steps', 'more restarts', 'large eps'). Its settings
    are the registry entry's (:meth:`genrobust.core.registry.AttackSpec.settings`): steps, step size and restarts
    of a PGD-style attack, or the attack's own budgets."""
    attack: str
    eps: float
    n: int
    role: str
    steps: Optional[int] = None          # PGD-style attacks (ours)
    step_size: Optional[float] = None    # None: 2.5 * eps / steps
    restarts: int = 1
    seed: int = 0
    budgets: tuple[tuple[str, int], ...] = ()  # an attack with budgets (AutoAttack's): its own, (name, value)


def plan_runs(kind: str, ecfg: EvalConfig, n: int) -> list[AttackRun]:
    """Every attack run of one classifier, cheapest group first. The paper's attack runs at each eps of the grid
    (and at strong_eps and strong_eps_more, where the stronger attacks run too, so that the worst case is defined
    there); the masking checks' extra runs at strong_eps; eps 0 is the clean accuracy, no run."""
    if kind not in CLASSIFIER_KINDS:
        raise EvaluationError(f"unknown classifier kind {kind!r}; choose one of {sorted(CLASSIFIER_KINDS)}")
    wrong = [a for a in ecfg.strong_attacks if kind not in attack_spec(a).applies_to]
    if wrong:
        raise EvaluationError(f"attack(s) {wrong} do not apply to a {kind} classifier; drop them from "
                              "eval.strong_attacks")
    paper, n_strong = PAPER_ATTACK[kind], min(ecfg.n_strong, n)
    spec = attack_spec(paper)
    own = spec.settings(ecfg)
    strong = (ecfg.strong_eps,) + tuple(e for e in ecfg.strong_eps_more if e != ecfg.strong_eps)
    runs = [AttackRun(paper, float(e), n, "paper", seed=ecfg.seed, **own)
            for e in sorted(set(ecfg.eps_grid) | set(strong)) if e > 0]
    for e in strong:  # the worst case over every attack at each of these eps
        for a in ecfg.strong_attacks:
            runs.append(AttackRun(a, e, n_strong, "strong", seed=ecfg.seed, **attack_spec(a).settings(ecfg)))
    base = AttackRun(paper, ecfg.strong_eps, n_strong, "paper", seed=ecfg.seed, **own)
    more = spec.scaled(base, mul=ecfg.masking_steps_factor)  # None: the paper's attack has nothing to scale
    if more is not None:
        runs.append(replace(base, role="more steps", **more))
    runs += [
        replace(base, role="more restarts", restarts=max(ecfg.masking_restarts, base.restarts + 1),
                seed=ecfg.seed + 1),
        AttackRun(paper, ecfg.masking_eps, n_strong, "large eps", seed=ecfg.seed, **own),
    ]
    return runs


# ---------------------------------------------------------------------------------------------------------------
# Running attacks
def run_attack(model, x: torch.Tensor, y: torch.Tensor, run: AttackRun, *, ecfg: EvalConfig,
               generator: torch.Generator, warnings: Optional[list] = None) -> torch.Tensor:
    """x_adv for one batch (every example attacked), by the registry entry of ``run.attack``. Our PGD attacks
    (genrobust.core.attacks) take input gradients only; Eq. 11-12 and multi-targeted run only the sub-models their
    objectives touch; an attack with budgets (AutoAttack's) gets ``run.budgets``."""
    if run.attack not in ATTACKS:
        raise EvaluationError(f"unknown attack {run.attack!r}; choose one of {list(ATTACKS)}")
    call = AttackCall(eps=run.eps, norm=ecfg.norm, steps=run.steps, step_size=run.step_size, restarts=run.restarts,
                      seed=run.seed, generator=generator, budgets=dict(run.budgets), warnings=warnings)
    return ATTACKS[run.attack].run(model, x, y, call)


def _check_perturbation(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str, attack: str) -> float:
    """Paranoid contract check of every attack's output: same shape, in [0, 1], inside the eps-ball (float slack
    1e-4 + 1e-5 * eps). Returns the largest perturbation norm."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise EvaluationError(f"{attack}: returned {tuple(x_adv.shape)} / non-finite values for input {tuple(x.shape)}")
    if x_adv.min().item() < 0 or x_adv.max().item() > 1:
        raise EvaluationError(f"{attack}: adversarial images leave [0, 1]")
    d = (x_adv - x).flatten(1)
    size = (d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)).max().item() if len(d) else 0.0
    if size > eps + 1e-4 + 1e-5 * eps:
        raise EvaluationError(f"{attack}: perturbation of {norm} norm {size:.6g} exceeds eps = {eps:g}")
    return size


@torch.no_grad()
def _predict(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) if len(x) \
        else torch.empty(0, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------------------
# Units: one attack run over one shard of the evaluation order (genrobust.store.units).
#
# A run attacks its clean-correct examples in *chunks* of ecfg.batch_size evaluation positions: chunk c covers
# positions [c * B, (c + 1) * B) and draws its randomness (random starts, AutoAttack's seed) from
# chunk_seed(run.seed, c) alone. A unit is a shard [lo, hi) of whole chunks (eval.shard_batches of them), so a
# chunk computes the same whether its run is one unit or many, in one process or on several machines: sharded,
# resumed and uninterrupted evaluations give identical per-example results.
def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` of a run seeded ``seed``: the run's own seed for chunk 0 (so a run of at most
    B examples draws exactly what one generator seeded ``seed`` draws), far-apart offsets for the others."""
    return int(seed) + 1_000_003 * int(chunk)


def shards(n: int, shard_size: int) -> list[tuple[int, int]]:
    """[lo, hi) shards of evaluation positions 0..n, shard_size each (the last one shorter)."""
    return [(lo, min(lo + shard_size, n)) for lo in range(0, n, shard_size)]


def unit_key(kind: str, run: AttackRun, lo: int, hi: int, ecfg: EvalConfig, *, classifier: str,
             eval_set: dict) -> dict:
    """Everything a unit's result depends on: the classifier's weights digest, the evaluation set (data, split,
    permutation seed), the attack and its settings (its registry entry's
    :meth:`~genrobust.core.registry.AttackSpec.key_settings`: steps, step size and restarts, or exactly its own
    budgets), eps, norm, the run's seed, the chunk size and [lo, hi). Not the run's role or n (a unit is shared by
    every run that needs it) and not execution settings (channels_last, compile: the same function up to float
    rounding)."""
    key = {"unit": "attack", "classifier": classifier, "kind": kind, "eval_set": eval_set, "attack": run.attack,
           "eps": float(run.eps), "norm": ecfg.norm, "seed": run.seed, "batch_size": ecfg.batch_size,
           "lo": lo, "hi": hi}
    key.update(attack_spec(run.attack).key_settings(run))
    return key


def attack_unit(model, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, run: AttackRun, lo: int, hi: int, *,
                ecfg: EvalConfig) -> dict:
    """One unit: robust flags of evaluation positions [lo, hi) under ``run``. Only clean-correct examples (``clean``
    over all positions) are attacked (one already wrong is wrong under every attack); an example is robust iff the
    model still predicts y on its adversarial image. Returns {robust ('0'/'1' per position), n_attacked, time_s,
    max_perturbation, warnings (AutoAttack's own)}."""
    if lo % ecfg.batch_size:
        raise EvaluationError(f"unit start {lo} is not a multiple of eval.batch_size {ecfg.batch_size}")
    t0 = time.perf_counter()
    flags = torch.zeros(hi - lo, dtype=torch.bool)
    size, n_attacked, warnings = 0.0, 0, []
    for c in range(lo // ecfg.batch_size, -(-hi // ecfg.batch_size)):
        a, b = c * ecfg.batch_size, min(hi, (c + 1) * ecfg.batch_size)
        idx = clean[a:b].nonzero(as_tuple=True)[0] + a
        if len(idx) == 0:
            continue
        seed = chunk_seed(run.seed, c)
        g = torch.Generator(device=x.device).manual_seed(seed)
        xb, yb = x[idx.to(x.device)], y[idx.to(y.device)]
        x_adv = run_attack(model, xb, yb, replace(run, seed=seed), ecfg=ecfg, generator=g, warnings=warnings)
        size = max(size, _check_perturbation(xb, x_adv, run.eps, ecfg.norm, run.attack))
        flags[idx - lo] = (_predict(model, x_adv, ecfg.batch_size) == yb).cpu()
        n_attacked += len(idx)
    return {"robust": flags_to_str(flags), "n_attacked": n_attacked, "time_s": round(time.perf_counter() - t0, 2),
            "max_perturbation": size, "warnings": warnings}


@dataclass(frozen=True)
class UnitContext:
    """Where an evaluation keeps its units: a store, the classifier's weights digest and the evaluation set's
    identity (genrobust.store.units; see :func:`unit_key`)."""
    store: UnitStore
    classifier: str
    eval_set: dict

    def key(self, kind: str, run: AttackRun, lo: int, hi: int, ecfg: EvalConfig) -> dict:
        return unit_key(kind, run, lo, hi, ecfg, classifier=self.classifier, eval_set=self.eval_set)

    def lookup(self, kind: str, run: AttackRun, lo: int, hi: int, ecfg: EvalConfig) -> Optional[dict]:
        """The unit's stored result, or None. One stored under its older key (genrobust.core.upgrade.
        unit_key_before_budgets) is copied to its key now and returned."""
        key = self.key(kind, run, lo, hi, ecfg)
        rec = self.store.get(key)
        old = unit_key_before_budgets(key, budget_values(ecfg)) if rec is None else None
        if old is not None and old in self.store:
            rec = self.store.get(old)
            if rec is not None:
                rec = self.store.put(key, rec)
        return rec


def run_units(work, x, y, clean, kind: str, run: AttackRun, ecfg: EvalConfig,
              units: UnitContext | None = None) -> list[dict]:
    """The units of one run, in order: from the store when there, else computed (and stored)."""
    out = []
    for lo, hi in shards(run.n, ecfg.shard_size):
        key = units.key(kind, run, lo, hi, ecfg) if units is not None else None
        rec = units.lookup(kind, run, lo, hi, ecfg) if units is not None else None
        if rec is None:
            rec = attack_unit(work, x, y, clean, run, lo, hi, ecfg=ecfg)
            if units is not None:
                rec = units.store.put(key, rec)
        out.append(rec)
    return out


def assemble_flags(recs: list[dict], warnings: Optional[list] = None) -> tuple[torch.Tensor, dict]:
    """One run from its units' records (:func:`run_units`, in order): robust flags (run.n,) bool and (n_attacked,
    time_s, max_perturbation) summed / maxed over the units. Their AutoAttack warnings are added to ``warnings``
    (each once; None: dropped)."""
    for r in recs:
        for w in r["warnings"]:
            if warnings is not None and w not in warnings:
                warnings.append(w)
    flags = str_to_flags("".join(r["robust"] for r in recs))
    return flags, {"n_attacked": sum(r["n_attacked"] for r in recs),
                   "time_s": round(sum(r["time_s"] for r in recs), 2),
                   "max_perturbation": max([r["max_perturbation"] for r in recs], default=0.0)}


def _attack_copy(model, channels_last: bool):
    """A frozen eval-mode copy to attack, batch norm folded into the convolutions (genrobust.core.fold: the same
    function up to float rounding; the caller's model is never modified). Channels-last weights make CPU
    convolutions faster; inputs stay contiguous NCHW, which third-party attacks reshape freely. Measured with
    benchmarks/bench_attacks.py --fold (docs/performance.md)."""
    return folded_copy(model, channels_last=channels_last)


def model_checks(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    """auto-attack's checks on the model itself (on clean-correct examples x, y): randomness (two forward passes
    agree, on L2-normalized outputs), outputs that look like probabilities instead of logits, and examples whose
    cross-entropy input gradient is exactly zero (a sign of masked gradients)."""
    with torch.no_grad():
        z1, z2 = model(x), model(x)
    unit = lambda z: z / (z.norm(dim=1, keepdim=True) + 1e-10)  # noqa: E731
    rand_diff = (unit(z1) - unit(z2)).norm(dim=1).max().item() if len(x) else 0.0
    probs = bool(len(x)) and bool(z1.max() < 1 + 1e-5 and z1.min() > -1e-5 and ((z1.sum(1) - 1).abs() < 1e-5).all())
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xg), y, reduction="sum")
        g = torch.autograd.grad(loss, xg, allow_unused=True)[0] if loss.requires_grad else None
    zero = len(x) if g is None else int((g.flatten(1).abs().sum(1) == 0).sum())
    return {"n": len(x), "randomness_max_diff": rand_diff, "probability_outputs": probs, "zero_gradients": zero}


def _run_record(run: AttackRun, flags: torch.Tensor, info: dict, ecfg: EvalConfig) -> dict:
    """The record of one run: its AttackRun fields (budgets only where the attack has any), the settings its registry
    entry records (:meth:`~genrobust.core.registry.AttackSpec.record_settings`), the flags and their summary."""
    k, n = int(flags.sum()), len(flags)
    fields = {f: v for f, v in asdict(run).items() if f != "budgets"}
    return {**fields, "norm": ecfg.norm, "robust": flags_to_str(flags), "n_robust": k, "accuracy": k / n,
            "ci95": wilson_interval(k, n), **info, **attack_spec(run.attack).record_settings(run)}


def prepare_attacks(model, x: torch.Tensor, y: torch.Tensor, ecfg: EvalConfig) -> tuple[torch.nn.Module, torch.Tensor]:
    """(the copy attacks run on, clean-correct flags (N,) bool on the CPU): what every unit of one classifier
    needs, computed once per process (a forward pass over the evaluation set)."""
    if x.dim() != 4 or x.shape[0] != y.shape[0]:
        raise EvaluationError(f"x must be (N, 3, H, W) with N = len(y); got {tuple(x.shape)} and {tuple(y.shape)}")
    work = maybe_compile(_attack_copy(model, ecfg.channels_last), ecfg.compile)
    return work, (_predict(work, x, ecfg.batch_size) == y).cpu()


def evaluate_classifier(model, x: torch.Tensor, y: torch.Tensor, ecfg: EvalConfig, *, kind: Optional[str] = None,
                        progress: bool = True, units: UnitContext | None = None,
                        prepared: tuple | None = None) -> dict:
    """Clean accuracy, every run of :func:`plan_runs`, and the model checks, for one classifier.

    model: (N, 3, 32, 32) [0, 1] -> (N, K) logits (``genrobust.load_classifier``); x: float images in [0, 1] in
    evaluation order (run n's are prefixes), y: (N,) int64, on the model's device. The clean forward pass runs once;
    attacks see only clean-correct examples. With ``units``, each run's units are read from / written to its store
    (computed only where missing: a killed evaluation resumes); without, they are computed in memory -- the same
    numbers. ``prepared``: :func:`prepare_attacks` of this model, x, y and ecfg when the caller has it already.
    Returns a JSON-able record (see the section comment).
    """
    t0 = time.perf_counter()
    kind = kind or classifier_kind(model)
    work, clean = prepared or prepare_attacks(model, x, y, ecfg)
    n = len(y)
    runs = plan_runs(kind, ecfg, n)
    n_strong = min(ecfg.n_strong, n)
    cc = clean[:n_strong].nonzero(as_tuple=True)[0][:ecfg.batch_size]
    checks = model_checks(work, x[cc], y[cc])
    k = int(clean.sum())
    record = {"classifier": kind, "paper_attack": PAPER_ATTACK[kind], "n": n, "n_strong": n_strong,
              "norm": ecfg.norm, "clean": {"n": n, "robust": flags_to_str(clean), "n_robust": k, "accuracy": k / n,
                                           "ci95": wilson_interval(k, n)},
              "runs": [], "model_checks": checks, "autoattack_warnings": []}
    for run in tqdm(runs, desc=f"{kind}: attacks", disable=not progress):
        flags, info = assemble_flags(run_units(work, x, y, clean, kind, run, ecfg, units),
                                     record["autoattack_warnings"])
        record["runs"].append(_run_record(run, flags, info, ecfg))
    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return record


# ---------------------------------------------------------------------------------------------------------------
# Worst case per example, tables' rows
def paired_tests(stored: dict) -> list[dict]:
    """Paired comparisons on the same test images (two-sided exact McNemar on the per-example flags,
    :func:`genrobust.core.stats.mcnemar`): the generative vs the softmax classifier at every eps both ran, under
    the paper's attacks (each classifier's own, Sec. 3.2) and as the worst case over all attacks; and, for each
    classifier, the paper's attack vs AutoAttack's worst case at the eps where AutoAttack ran. Each row names
    what is compared, eps, n (the common prefix of the evaluation order) and the test."""
    rows, recs = [], records(stored)
    if {"generative", "softmax"} <= set(recs):
        g, s = recs["generative"], recs["softmax"]
        for e in sorted(set(g.eps_values(("paper",))) & set(s.eps_values(("paper",)))):
            for what, fg, fs in (("paper's attack", g.paper_flags(e), s.paper_flags(e)),
                                 ("worst case", g.worst(e).flags, s.worst(e).flags)):
                if e == 0 and what == "worst case":
                    continue  # at eps 0 both are the clean accuracy
                n = min(len(fg), len(fs))
                rows.append({"comparison": "generative vs softmax", "attack": "clean" if e == 0 else what,
                             "eps": e, **mcnemar(fg[:n], fs[:n])})
    for kind, rec in recs.items():
        autoattack = sorted({r.attack for r in rec.runs if attack_spec(r.attack).family == "autoattack"})
        for e in sorted({r.eps for r in rec.runs if r.attack in autoattack}):
            paper = rec.paper_run(e)
            if paper is None:
                continue
            aa = rec.worst(e, autoattack)
            n = min(aa.n, paper.n)
            rows.append({"comparison": f"{kind}: paper's attack vs AutoAttack", "attack": "paper's vs AutoAttack",
                         "eps": e, **mcnemar(paper.flags[:n], aa.flags[:n])})
    return rows


def accuracy_rows(stored: dict) -> list[dict]:
    """Flat rows (classifier, eps, attack, role, n, accuracy, ci95, settings, time) of every run, the clean
    accuracy and the worst case at each eps; ``stored``: {kind: evaluate_classifier record or EvalRecord}."""
    rows = []
    for kind, rec in records(stored).items():
        k = rec.clean.count("1")
        rows.append({"classifier": kind, "eps": 0.0, "attack": "clean", "role": "clean", "n": rec.n,
                     "accuracy": rec.clean_accuracy, "ci95": wilson_interval(k, rec.n)})
        for r in rec.runs:
            d = r.to_dict()
            rows.append({"classifier": kind, **{k: d[k] for k in ("eps", "attack", "role", "n", "accuracy", "ci95",
                                                                   "steps", "step_size", "restarts", "time_s",
                                                                   "n_attacked")}})
        for w in rec.worst_cases():
            w = w.to_dict()
            rows.append({"classifier": kind, "eps": w["eps"], "attack": "worst", "role": "worst case", "n": w["n"],
                         "accuracy": w["accuracy"], "ci95": w["ci95"], "over": w["attacks"]})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Profile-level entry points (notebook 03)
def evaluation_set(data, ecfg: EvalConfig, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The first n_test images of a seeded permutation of the test split: x (n, 3, 32, 32) float in [0, 1], y (n,)."""
    idx = eval_indices(len(data.test_y), ecfg.n_test, ecfg.seed)
    return to_float(data.test_x[idx], device), data.test_y[idx].to(device)


def evaluate_classifiers(paths: dict, x: torch.Tensor, y: torch.Tensor, ecfg: EvalConfig, *, device="cpu",
                         progress: bool = True) -> dict:
    """{kind: evaluate_classifier record} for each checkpoint in ``paths`` (loaded with genrobust.load_classifier)."""
    return {kind: evaluate_classifier(load_classifier(path, device), x, y, ecfg, kind=kind, progress=progress)
            | {"checkpoint": str(path)} for kind, path in paths.items()}
