"""The parts of your model's record: accuracy per class, the paired comparison with our classifiers (exact
McNemar on the same images, on the worst case over the attacks both faced), the budget it ran under, and where the
record is written.

Ours are compared at every eps both ran, never across different attack sets; where they could not be compared the
record says why and how to compare them (:func:`not_compared_note`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.cifar10 import NUM_CLASSES
from ..core.config import Profile
from ..core.stats import mcnemar, wilson_interval
from ..core.registry import EVAL_BUDGETS
from ..measure.record import EvalRecord
from ..store.paths import checkout_of, runs_dir


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


def budget_record(profile: Profile, budget: str | None, parameters: dict | None) -> dict:
    """What the record says about the budget: its name and line, or the profile's eval settings; the -p
    parameters given on top."""
    if budget is None:
        return {"name": None, "doc": f"the {profile.name} profile's eval settings", "parameters": parameters or {}}
    b = EVAL_BUDGETS[budget]
    return {"name": b.name, "doc": b.doc, "sized_for": b.sized_for, "parameters": parameters or {}}


def record_path(root: Path, out_dir, ident: str, budget: str | None) -> Path:
    """Where the record goes by default: ``out_dir`` (or the current directory outside a checkout) /
    genrobust-evaluation-<id>-<budget>.json; inside a checkout, its runs/evaluations/ (ignored by git)."""
    name = f"genrobust-evaluation-{ident}-{budget or 'profile'}.json"
    inside = out_dir is None and checkout_of(root) == root
    return (runs_dir() / "evaluations" / name) if inside else root / name
