"""Evaluation: AUROC of one binary model d_k (Section 3.4), and clean / robust accuracy of a classifier
(Section 3.2, Tab. 1, Fig. 1) with stronger attacks and gradient-masking checks.

AUROC. Normal scenario: clean class-k test images (positives) vs clean other-class images (negatives).
Adversarial scenario: positives perturbed to *minimize* d_k and negatives perturbed to *maximize* d_k, L2 PGD
within eps. AUROC is scikit-learn's ``roc_auc_score`` over the scores d_k.

Robust accuracy. :func:`evaluate_classifier` runs the paper's protocol (PGD on cross-entropy, Eq. 10, for the
softmax classifier; the adaptive attack of Eq. 11-12 for the generative one) over an eps grid, AutoAttack's
standard attacks (pyautoattack) and the multi-targeted margin attack at one eps, and the extra runs of the masking
checks; :func:`worst_case` takes the per-example AND over all attacks; :func:`masking_checks` turns a record into
{check, passed, detail} rows (auto-attack's checks.py is the model).
"""
from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from . import attacks as A
from .attacks import eval_mode, pgd_score
from .config import AUTOATTACK_ATTACKS, EvalConfig
from .models import GenerativeClassifier
from .objectives import d_score


def _batched_scores(model, x, *, eps, steps, step_size, minimize, batch_size, generator, device):
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        if eps > 0:
            xb = pgd_score(model, d_score, xb, minimize=minimize, eps=eps, norm="l2", steps=steps,
                           step_size=step_size, generator=generator)
        with torch.no_grad():
            out.append(d_score(model, xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def binary_scores(model, x_pos, x_neg, *, eps=0.0, steps=10, step_size=None, batch_size=256, generator=None,
                  device="cpu"):
    """d_k on positives and negatives (float images in [0, 1]); with eps > 0, each side attacked against itself."""
    with eval_mode(model):
        s_pos = _batched_scores(model, x_pos, eps=eps, steps=steps, step_size=step_size, minimize=True,
                                batch_size=batch_size, generator=generator, device=device)
        s_neg = _batched_scores(model, x_neg, eps=eps, steps=steps, step_size=step_size, minimize=False,
                                batch_size=batch_size, generator=generator, device=device)
    return s_pos, s_neg


def auroc(s_pos: torch.Tensor, s_neg: torch.Tensor) -> float:
    """Area under the ROC curve for separating positives (label 1) from negatives (label 0) by score."""
    scores = torch.cat([s_pos, s_neg]).numpy()
    labels = [1] * len(s_pos) + [0] * len(s_neg)
    if not (math.isfinite(float(scores.sum()))):
        return float("nan")
    return float(roc_auc_score(labels, scores))


def binary_auroc(model, x_pos, x_neg, eps_grid=(0.0,), *, steps=10, step_size=None, batch_size=256, seed=0,
                 device="cpu") -> dict[float, float]:
    """AUROC of d_k for each eps in eps_grid (eps 0 = normal scenario, eps > 0 = adversarial scenario)."""
    out = {}
    for eps in eps_grid:
        g = torch.Generator().manual_seed(seed)
        s_pos, s_neg = binary_scores(model, x_pos, x_neg, eps=float(eps), steps=steps, step_size=step_size,
                                     batch_size=batch_size, generator=g, device=device)
        out[float(eps)] = auroc(s_pos, s_neg)
    return out


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n (well-behaved near 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.no_grad()
def predict(model, x, batch_size=500, device="cpu") -> torch.Tensor:
    """argmax predictions (N,) of a classifier on float images (N, 3, 32, 32) in [0, 1]."""
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


# =================================================================================================================
# Robust accuracy of a classifier (Sec. 3.2, Tab. 1, Fig. 1): the paper's protocol, stronger attacks, the
# per-example worst case over all attacks, and gradient-masking checks (auto-attack's checks.py is the model).
#
# An evaluation record (``evaluate_classifier``) is plain JSON: per run the attack, its settings and the robust
# flags of every example as a '0'/'1' string, so tables, worst cases and checks can be rebuilt from the results
# file without rerunning anything. Runs evaluate a *prefix* of one seeded permutation of the test set (the paper's
# attacks the first n_test images, the strong attacks and masking runs the first n_strong), so any two runs share
# their first min(n) examples and the worst case per example is well defined there.
# Sec. 3.2: PGD on cross-entropy (Eq. 10) for the softmax classifier, the adaptive attack of Eq. 11-12 for the
# generative classifier.
PAPER_ATTACK = {"generative": "eq11_12", "softmax": "pgd"}
ATTACK_NAMES = ("pgd", "eq11_12", "multi_targeted") + AUTOATTACK_ATTACKS
BLACK_BOX = ("square",)
ATTACK_LABELS = {"clean": "clean", "pgd": "PGD-CE (Eq. 10)", "eq11_12": "Eq. 11-12", "multi_targeted": "multi-targeted",
                 "apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square",
                 "worst": "worst case"}
_AA_NORM = {"l2": "L2", "linf": "Linf"}


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


def flags_to_str(flags: torch.Tensor) -> str:
    """(N,) bool -> '0110...' (compact, exact, JSON-friendly)."""
    return "".join("1" if f else "0" for f in flags.tolist())


def str_to_flags(s: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in s], dtype=torch.bool)


@dataclass(frozen=True)
class AttackRun:
    """One attack at one eps on the first ``n`` examples. ``role``: 'paper' (Sec. 3.2 protocol), 'strong'
    (AutoAttack / multi-targeted), or a masking check ('more steps', 'more restarts', 'large eps')."""
    attack: str
    eps: float
    n: int
    role: str
    steps: Optional[int] = None          # PGD-type attacks (ours); AutoAttack's budgets are in the eval config
    step_size: Optional[float] = None    # None: 2.5 * eps / steps
    restarts: int = 1
    seed: int = 0


def plan_runs(kind: str, ecfg: EvalConfig, n: int) -> list[AttackRun]:
    """Every attack run of one classifier, cheapest group first. The paper's attack runs at each eps of the grid
    (and at strong_eps, where the stronger attacks are compared with it); eps 0 is the clean accuracy, no run."""
    if kind not in PAPER_ATTACK:
        raise EvaluationError(f"unknown classifier kind {kind!r}; choose one of {sorted(PAPER_ATTACK)}")
    paper, n_strong = PAPER_ATTACK[kind], min(ecfg.n_strong, n)
    pgd = dict(steps=ecfg.steps, step_size=ecfg.step_size, restarts=ecfg.restarts, seed=ecfg.seed)
    runs = [AttackRun(paper, float(e), n, "paper", **pgd)
            for e in sorted(set(ecfg.eps_grid) | {ecfg.strong_eps}) if e > 0]
    for a in ecfg.strong_attacks:
        runs.append(AttackRun(a, ecfg.strong_eps, n_strong, "strong", **pgd) if a == "multi_targeted"
                    else AttackRun(a, ecfg.strong_eps, n_strong, "strong", seed=ecfg.seed))
    runs += [
        AttackRun(paper, ecfg.strong_eps, n_strong, "more steps", ecfg.steps * ecfg.masking_steps_factor,
                  ecfg.step_size, ecfg.restarts, ecfg.seed),
        AttackRun(paper, ecfg.strong_eps, n_strong, "more restarts", ecfg.steps, ecfg.step_size,
                  max(ecfg.masking_restarts, ecfg.restarts + 1), ecfg.seed + 1),
        AttackRun(paper, ecfg.masking_eps, n_strong, "large eps", **pgd),
    ]
    return runs


# ---------------------------------------------------------------------------------------------------------------
# Running attacks
@contextmanager
def _frozen_parameters(model):
    """requires_grad off for every parameter inside the block (restored afterwards): third-party attacks that call
    .backward() on the input then compute no weight gradients and write no parameter .grad."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)


class _Collect(logging.Handler):
    def __init__(self, sink: list):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record):
        msg = record.getMessage()
        if msg not in self.sink:
            self.sink.append(msg)


@contextmanager
def _autoattack_warnings(sink: list):
    """AutoAttack reports its own checks (randomness, probabilities as outputs, zero gradients, Square success) as
    logger warnings; collect them into ``sink`` for the masking-check table instead of printing them."""
    log = logging.getLogger("auto-attack")
    handler, propagate = _Collect(sink), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def autoattack(model, x: torch.Tensor, y: torch.Tensor, attack: str, *, eps: float, norm: str = "l2", seed: int = 0,
               apgd_iters: int = 100, targets: int = 9, fab_iters: int = 100, square_queries: int = 5000,
               batch_size: int = 250, warnings: Optional[list] = None) -> torch.Tensor:
    """One attack of AutoAttack's standard set ('apgd-ce', 'apgd-t', 'fab-t', 'square') through pyautoattack's
    ``run_standard_evaluation``; returns x_adv (N, 3, H, W) in [0, 1] (x itself where the attack failed).

    Standard settings (AutoAttack._set_version('standard')): one restart each, APGD with rho 0.75, FAB-T and APGD-T
    over the ``targets`` most likely wrong classes, Square with p_init 0.8. The budgets (iterations, targets,
    queries) are arguments; the standard values are the defaults. AutoAttack seeds the global torch RNG, so it runs
    inside ``torch.random.fork_rng`` (the caller's RNG state is untouched), with the model's parameters frozen.
    """
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    if attack not in AUTOATTACK_ATTACKS:
        raise EvaluationError(f"unknown AutoAttack attack {attack!r}; choose one of {list(AUTOATTACK_ATTACKS)}")
    if x.shape[0] == 0:
        return x.clone()
    dev, aa_norm = str(x.device), _AA_NORM[norm]
    aa = AutoAttack(model, norm=aa_norm, eps=eps, seed=seed, version="standard", device=dev)
    # APGD derives its step-size checkpoints from n_iter at construction: rebuild with the standard arguments.
    aa.apgd = APGDAttack(model, n_restarts=1, n_iter=apgd_iters, verbose=False, eps=eps, norm=aa_norm, eot_iter=1,
                         rho=.75, seed=seed, device=dev, logger=aa.logger)
    aa.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_iter=apgd_iters, verbose=False, eps=eps,
                                           norm=aa_norm, eot_iter=1, rho=.75, seed=seed, device=dev,
                                           n_target_classes=targets, logger=aa.logger)
    aa.fab.n_iter, aa.fab.n_target_classes = fab_iters, targets
    aa.square.n_queries = square_queries
    aa.attacks_to_run = [attack]
    sink = [] if warnings is None else warnings
    with torch.random.fork_rng(devices=[]), _frozen_parameters(model), _autoattack_warnings(sink):
        x_adv, _ = aa.run_standard_evaluation(x.detach().contiguous(), y, batch_size=batch_size)
    return x_adv.detach()


def run_attack(model, x: torch.Tensor, y: torch.Tensor, run: AttackRun, *, ecfg: EvalConfig,
               generator: torch.Generator, warnings: Optional[list] = None) -> torch.Tensor:
    """x_adv for one batch (every example attacked). Our PGD attacks (genrobust.attacks) take input gradients only;
    Eq. 11-12 and multi-targeted run only the sub-models their objectives touch."""
    if run.attack in AUTOATTACK_ATTACKS:
        return autoattack(model, x, y, run.attack, eps=run.eps, norm=ecfg.norm, seed=run.seed,
                          apgd_iters=ecfg.aa_apgd_iters, targets=ecfg.aa_targets, fab_iters=ecfg.aa_fab_iters,
                          square_queries=ecfg.aa_square_queries, batch_size=len(x), warnings=warnings)
    fn = {"pgd": A.pgd_untargeted, "eq11_12": A.eq11_12_attack, "multi_targeted": A.multi_targeted}.get(run.attack)
    if fn is None:
        raise EvaluationError(f"unknown attack {run.attack!r}; choose one of {list(ATTACK_NAMES)}")
    return fn(model, x, y, eps=run.eps, norm=ecfg.norm, steps=run.steps, step_size=run.step_size,
              random_start=run.restarts > 1, restarts=run.restarts, generator=generator)


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


def attack_flags(model, x: torch.Tensor, y: torch.Tensor, candidates: torch.Tensor, run: AttackRun, *,
                 ecfg: EvalConfig, progress: bool = False, warnings: Optional[list] = None) -> tuple[torch.Tensor, dict]:
    """Robust flags (N,) bool of one run: only the ``candidates`` (the clean-correct examples: one already wrong is
    wrong under every attack) are attacked, in batches of ecfg.batch_size; an example is robust iff the model
    still predicts y on its adversarial image. Returns (flags, info with n_attacked, time_s, max_perturbation)."""
    t0 = time.perf_counter()
    idx = candidates.nonzero(as_tuple=True)[0]
    flags = torch.zeros(len(y), dtype=torch.bool)
    g = torch.Generator(device=x.device).manual_seed(run.seed)
    size = 0.0
    chunks = [idx[i:i + ecfg.batch_size] for i in range(0, len(idx), ecfg.batch_size)]
    for chunk in tqdm(chunks, desc=f"{ATTACK_LABELS[run.attack]} eps={run.eps:g}", leave=False, disable=not progress):
        xb, yb = x[chunk], y[chunk]
        x_adv = run_attack(model, xb, yb, run, ecfg=ecfg, generator=g, warnings=warnings)
        size = max(size, _check_perturbation(xb, x_adv, run.eps, ecfg.norm, run.attack))
        flags[chunk.cpu()] = (_predict(model, x_adv, ecfg.batch_size) == yb).cpu()
    return flags, {"n_attacked": len(idx), "time_s": round(time.perf_counter() - t0, 2), "max_perturbation": size}


def _attack_copy(model, channels_last: bool):
    """A frozen eval-mode copy to attack (the caller's model is never modified). Channels-last weights make CPU
    convolutions faster (measured ~1.7x for the cpu profile's thin ResNet18 d_k, ~1.25x for the softmax ResNet18);
    inputs stay contiguous NCHW, which third-party attacks reshape freely."""
    work = copy.deepcopy(model).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    return work.to(memory_format=torch.channels_last) if channels_last else work


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
    k, n = int(flags.sum()), len(flags)
    rec = {**asdict(run), "norm": ecfg.norm, "robust": flags_to_str(flags), "n_robust": k, "accuracy": k / n,
           "ci95": wilson_interval(k, n), **info}
    if run.attack in AUTOATTACK_ATTACKS:
        rec.update(steps=None, step_size=None, autoattack={
            "version": "standard", "apgd_iters": ecfg.aa_apgd_iters, "targets": ecfg.aa_targets,
            "fab_iters": ecfg.aa_fab_iters, "square_queries": ecfg.aa_square_queries})
    elif run.step_size is None:
        rec["step_size"] = A.default_step_size(run.eps, run.steps)
    return rec


def evaluate_classifier(model, x: torch.Tensor, y: torch.Tensor, ecfg: EvalConfig, *, kind: Optional[str] = None,
                        progress: bool = True) -> dict:
    """Clean accuracy, every run of :func:`plan_runs`, and the model checks, for one classifier.

    model: (N, 3, 32, 32) [0, 1] -> (N, K) logits (``genrobust.load_classifier``); x: float images in [0, 1] in
    evaluation order (run n's are prefixes), y: (N,) int64, on the model's device. The clean forward pass runs once;
    attacks see only clean-correct examples. Returns a JSON-able record (see the section comment).
    """
    t0 = time.perf_counter()
    kind = kind or classifier_kind(model)
    if x.dim() != 4 or x.shape[0] != y.shape[0]:
        raise EvaluationError(f"x must be (N, 3, H, W) with N = len(y); got {tuple(x.shape)} and {tuple(y.shape)}")
    work = _attack_copy(model, ecfg.channels_last)
    n = len(y)
    runs = plan_runs(kind, ecfg, n)
    n_strong = min(ecfg.n_strong, n)
    clean = (_predict(work, x, ecfg.batch_size) == y).cpu()
    cc = clean[:n_strong].nonzero(as_tuple=True)[0][:ecfg.batch_size]
    checks = model_checks(work, x[cc], y[cc])
    k = int(clean.sum())
    record = {"classifier": kind, "paper_attack": PAPER_ATTACK[kind], "n": n, "n_strong": n_strong,
              "norm": ecfg.norm, "clean": {"n": n, "robust": flags_to_str(clean), "n_robust": k, "accuracy": k / n,
                                           "ci95": wilson_interval(k, n)},
              "runs": [], "model_checks": checks, "autoattack_warnings": []}
    for run in tqdm(runs, desc=f"{kind}: attacks", disable=not progress):
        flags, info = attack_flags(work, x[:run.n], y[:run.n], clean[:run.n], run, ecfg=ecfg, progress=progress,
                                   warnings=record["autoattack_warnings"])
        record["runs"].append(_run_record(run, flags, info, ecfg))
    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return record


# ---------------------------------------------------------------------------------------------------------------
# Worst case per example, tables' rows
def _flags(rec: dict, n: Optional[int] = None) -> torch.Tensor:
    f = str_to_flags(rec["robust"])
    return f if n is None else f[:n]


def eps_values(record: dict, roles=("paper", "strong", "more steps", "more restarts")) -> list[float]:
    """The eps values with runs of the given roles, plus 0 (clean), ascending."""
    return sorted({0.0} | {r["eps"] for r in record["runs"] if r["role"] in roles})


def worst_case(record: dict, eps: float) -> dict:
    """Per-example AND of 'robust' over every run at ``eps`` (and the clean flags), on the common prefix of those
    runs: an example counts as robust only if no attack broke it. eps 0: the clean accuracy."""
    runs = [r for r in record["runs"] if abs(r["eps"] - eps) < 1e-12]
    n = min([len(r["robust"]) for r in runs] + [record["n"]])
    flags = _flags(record["clean"], n)
    for r in runs:
        flags = flags & _flags(r, n)
    k = int(flags.sum())
    return {"eps": eps, "n": n, "robust": flags_to_str(flags), "n_robust": k, "accuracy": k / n if n else float("nan"),
            "ci95": wilson_interval(k, n), "attacks": sorted({r["attack"] for r in runs}) or ["clean"]}


def accuracy_rows(records: dict) -> list[dict]:
    """Flat rows (classifier, eps, attack, role, n, accuracy, ci95, settings, time) of every run, the clean
    accuracy and the worst case at each eps; ``records``: {kind: evaluate_classifier record}."""
    rows = []
    for kind, rec in records.items():
        rows.append({"classifier": kind, "eps": 0.0, "attack": "clean", "role": "clean", "n": rec["n"],
                     "accuracy": rec["clean"]["accuracy"], "ci95": rec["clean"]["ci95"]})
        for r in rec["runs"]:
            rows.append({"classifier": kind, **{k: r[k] for k in ("eps", "attack", "role", "n", "accuracy", "ci95",
                                                                   "steps", "step_size", "restarts", "time_s",
                                                                   "n_attacked")}})
        for e in eps_values(rec):
            w = worst_case(rec, e)
            rows.append({"classifier": kind, "eps": e, "attack": "worst", "role": "worst case", "n": w["n"],
                         "accuracy": w["accuracy"], "ci95": w["ci95"], "over": w["attacks"]})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Gradient-masking checks
def paired_increase(base: torch.Tensor, other: torch.Tensor, alpha: float = 0.05) -> dict:
    """Is ``other``'s robust accuracy higher than ``base``'s by more than noise? Same examples, so a paired test:
    b = robust under other but broken under base, c = the converse; one-sided exact McNemar (binomial) test of
    b > c: p = P(X >= b), X ~ Bin(b + c, 1/2). ``significant`` when p < alpha."""
    from scipy.stats import binom
    b, c = int((other & ~base).sum()), int((base & ~other).sum())
    p = float(binom.sf(b - 1, b + c, 0.5)) if b > c else 1.0
    return {"b": b, "c": c, "increase": (b - c) / max(1, len(base)), "p": p, "significant": p < alpha}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _find(record: dict, role: str, eps: Optional[float] = None) -> Optional[dict]:
    for r in record["runs"]:
        if r["role"] == role and (eps is None or abs(r["eps"] - eps) < 1e-12):
            return r
    return None


def _check(kind, name, passed, detail, type_="masking"):
    return {"classifier": kind, "check": name, "passed": passed, "detail": detail, "type": type_}


def masking_checks(records: dict, ecfg: EvalConfig) -> list[dict]:
    """Sanity checks of an evaluation, per classifier: a list of {classifier, check, passed, detail, type}.

    type 'masking': a failure means the robust accuracies above are not trustworthy (gradient masking or a weak
    attack); type 'finding': a result to report (the paper's attack vs AutoAttack gap), not a failure.
    ``passed`` is None when the runs a check needs are missing. ``records``: {kind: evaluate_classifier record}.
    """
    out = []
    for kind, rec in records.items():
        mc, paper = rec["model_checks"], rec["paper_attack"]
        label = ATTACK_LABELS[paper]
        out.append(_check(kind, "deterministic outputs", mc["randomness_max_diff"] <= 1e-4,
                          f"max difference of normalized outputs over two passes: {mc['randomness_max_diff']:.2g} "
                          f"(n = {mc['n']})"))
        out.append(_check(kind, "outputs are logits", not mc["probability_outputs"],
                          "rows look like probabilities: attack the logits" if mc["probability_outputs"]
                          else "outputs are not probability vectors"))
        out.append(_check(kind, "no zero input gradients", mc["zero_gradients"] == 0,
                          f"{mc['zero_gradients']} of {mc['n']} clean-correct examples have an exactly zero "
                          f"cross-entropy input gradient"))
        # Robust accuracy non-increasing in eps (the paper's attack, each eps attacked independently).
        paper_runs = sorted([r for r in rec["runs"] if r["role"] == "paper"], key=lambda r: r["eps"])
        seq = [(0.0, _flags(rec["clean"]))] + [(r["eps"], _flags(r)) for r in paper_runs]
        tests = [(e0, e1, paired_increase(f0, f1)) for (e0, f0), (e1, f1) in zip(seq, seq[1:])]
        bad = [t for t in tests if t[2]["significant"]]
        worst = max(tests, key=lambda t: t[2]["b"] - t[2]["c"], default=None)
        accs = " -> ".join(f"{_pct(f.float().mean().item())} @ {e:g}" for e, f in seq)
        detail = f"{label}: {accs}"
        if worst is not None and worst[2]["b"] > worst[2]["c"]:
            e0, e1, t = worst
            detail += (f"; largest increase eps {e0:g} -> {e1:g}: {t['b']} examples recovered vs {t['c']} lost "
                       f"(p = {t['p']:.2g})")
        out.append(_check(kind, "accuracy non-increasing in eps", not bad if tests else None, detail))
        # Near-zero accuracy at a huge radius.
        big = _find(rec, "large eps")
        out.append(_check(kind, f"accuracy near 0 at eps = {ecfg.masking_eps:g}",
                          None if big is None else big["accuracy"] <= ecfg.masking_max_acc,
                          "not run" if big is None else
                          f"{label}: {_pct(big['accuracy'])} of n = {big['n']} (allowed <= {_pct(ecfg.masking_max_acc)})"))
        # More steps / more restarts must not raise the accuracy beyond noise.
        base = _find(rec, "paper", ecfg.strong_eps)
        for role, what in (("more steps", "steps"), ("more restarts", "restarts")):
            r = _find(rec, role)
            if r is None or base is None:
                out.append(_check(kind, f"{role} do not raise accuracy", None, "not run"))
                continue
            n = min(len(r["robust"]), len(base["robust"]))
            t = paired_increase(_flags(base, n), _flags(r, n))
            b_acc = _flags(base, n).float().mean().item()
            out.append(_check(kind, f"{role} do not raise accuracy", not t["significant"],
                              f"{label} at eps {ecfg.strong_eps:g}, n = {n}: {base[what]} {what} {_pct(b_acc)} -> "
                              f"{r[what]} {what} {_pct(r['accuracy'])} ({t['b']} recovered, {t['c']} newly broken, "
                              f"p = {t['p']:.2g})"))
        # Square (black-box) must not break examples that every white-box attack left robust.
        sq = next((r for r in rec["runs"] if r["attack"] == "square"), None)
        white = [r for r in rec["runs"] if abs(r["eps"] - ecfg.strong_eps) < 1e-12 and r["attack"] not in BLACK_BOX]
        if sq is None or not white:
            out.append(_check(kind, "Square not stronger than white-box", None, "Square not run"))
        else:
            n = min([len(sq["robust"])] + [len(r["robust"]) for r in white])
            wb = _flags(rec["clean"], n)
            for r in white:
                wb = wb & _flags(r, n)
            only = int((wb & ~_flags(sq, n)).sum())
            out.append(_check(kind, "Square not stronger than white-box", only <= ecfg.square_alpha * n,
                              f"Square breaks {only} of n = {n} examples that all {len(white)} white-box runs left "
                              f"robust (allowed <= {ecfg.square_alpha * n:.2g}); white-box worst case "
                              f"{_pct(wb.float().mean().item())}, Square alone {_pct(_flags(sq, n).float().mean().item())}"))
        warn = rec.get("autoattack_warnings", [])
        out.append(_check(kind, "AutoAttack's own checks", not warn if any(
            r["attack"] in AUTOATTACK_ATTACKS for r in rec["runs"]) else None,
            "no warnings" if not warn else " | ".join(warn)))
        # Finding: the paper's attack vs AutoAttack.
        aa = [r for r in rec["runs"] if r["attack"] in AUTOATTACK_ATTACKS]
        if aa and base is not None:
            n = min([len(r["robust"]) for r in aa] + [len(base["robust"])])
            aa_flags = _flags(rec["clean"], n)
            for r in aa:
                aa_flags = aa_flags & _flags(r, n)
            p_acc, a_acc = _flags(base, n).float().mean().item(), aa_flags.float().mean().item()
            gap = p_acc - a_acc
            out.append(_check(kind, "paper's attack vs AutoAttack", gap <= ecfg.aa_gap,
                              f"eps {ecfg.strong_eps:g}, n = {n}: {label} {_pct(p_acc)}, AutoAttack "
                              f"({', '.join(r['attack'] for r in aa)}) {_pct(a_acc)}: gap {100 * gap:+.1f} points "
                              f"(reported when > {100 * ecfg.aa_gap:.0f})", "finding"))
        else:
            out.append(_check(kind, "paper's attack vs AutoAttack", None, "AutoAttack not run", "finding"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Ablations (Figs. 5-8): the scores behind binary_auroc, and a paired bootstrap of AUROC over test examples
def binary_auroc_scores(model, x_pos, x_neg, eps_grid=(0.0,), *, steps=10, step_size=None, batch_size=256, seed=0,
                        device="cpu") -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """The per-example scores behind :func:`binary_auroc`, with the same attacks and seeds:
    {eps: (s_pos (n_pos,), s_neg (n_neg,))}, so ``auroc(*scores[eps]) == binary_auroc(...)[eps]``."""
    out = {}
    for eps in eps_grid:
        g = torch.Generator().manual_seed(seed)
        out[float(eps)] = binary_scores(model, x_pos, x_neg, eps=float(eps), steps=steps, step_size=step_size,
                                        batch_size=batch_size, generator=g, device=device)
    return out


def bootstrap_auroc(pairs, n_boot: int = 1000, seed: int = 0):
    """AUROC of each (s_pos, s_neg) pair on ``n_boot`` bootstrap resamples of the test examples: (n_boot, len(pairs)).

    All pairs must score the same positives (n) and the same negatives (m), in the same order (e.g. two models, or
    one model at several eps, on one test set): every pair sees the same resamples, so differences between columns
    are *paired*. Positives and negatives are resampled separately (AUROC conditions on the labels). A resample is
    a vector of counts w (how often each example was drawn), and AUROC_b = w_pos^T C w_neg / (n m) with
    C[i, j] = 1[s_pos_i > s_neg_j] + 0.5 * 1[s_pos_i == s_neg_j], which is exactly roc_auc_score on the resample.
    """
    import numpy as np
    pairs = [(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)) for p, q in pairs]
    if not pairs:
        return np.empty((n_boot, 0))
    n, m = len(pairs[0][0]), len(pairs[0][1])
    if any(len(p) != n or len(q) != m for p, q in pairs):
        raise ValueError("bootstrap_auroc: every pair must score the same positives and negatives (equal sizes)")
    rng = np.random.default_rng(seed)
    w_pos = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, n) draw counts
    w_neg = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)  # (B, m)
    out = np.empty((n_boot, len(pairs)))
    for j, (p, q) in enumerate(pairs):
        c = (p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :])  # (n, m)
        out[:, j] = ((w_pos @ c) * w_neg).sum(1) / (n * m)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Profile-level entry points (notebook 03)
def classifier_checkpoints(profile, data=None, *, kinds=None, train_missing: bool = False, progress: bool = True) -> dict:
    """{kind: checkpoint path} of the profile's calibrated generative classifier (notebook 02) and softmax baseline
    (notebook 01). With train_missing, missing ones are trained (and calibrated) first, train-if-missing."""
    from .calibrate import calibrate, classifier_path
    from .runner import train_all
    from .train import softmax_result

    kinds = tuple(kinds or profile.eval.classifiers)
    missing = ("generative" in kinds and not classifier_path(profile).is_file()) or \
              ("softmax" in kinds and softmax_result(profile) is None)
    if missing and not train_missing:
        raise EvaluationError(f"classifiers of profile {profile.name!r} are missing; run notebooks 01 and 02 first "
                              "(or pass train_missing=True)")
    if missing:
        train_all(profile, softmax="softmax" in kinds, progress=progress)
        if "generative" in kinds and not classifier_path(profile).is_file():
            calibrate(profile, data, progress=progress)
    out = {}
    if "generative" in kinds:
        out["generative"] = str(classifier_path(profile))
    if "softmax" in kinds:
        out["softmax"] = softmax_result(profile)["checkpoint"]
    return out


def evaluation_set(data, ecfg: EvalConfig, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The first n_test images of a seeded permutation of the test split: x (n, 3, 32, 32) float in [0, 1], y (n,)."""
    from .data import to_float
    idx = eval_indices(len(data.test_y), ecfg.n_test, ecfg.seed)
    return to_float(data.test_x[idx], device), data.test_y[idx].to(device)


def evaluate_classifiers(paths: dict, x: torch.Tensor, y: torch.Tensor, ecfg: EvalConfig, *, device="cpu",
                         progress: bool = True) -> dict:
    """{kind: evaluate_classifier record} for each checkpoint in ``paths`` (loaded with genrobust.load_classifier)."""
    from .results import load_classifier
    return {kind: evaluate_classifier(load_classifier(path, device), x, y, ecfg, kind=kind, progress=progress)
            | {"checkpoint": str(path)} for kind, path in paths.items()}
