"""LEGACY configs (older files and overrides): the eval.aa_* fields from before the attacks owned their budgets
(genrobust.core.registry) and the eval.budgets entry each one sets. Three small functions read them, so that the one
upgrade step for older files (issue 41) can take them over whole: from_dict and apply_overrides translate them
(:func:`upgrade_eval`), EvalConfig names what replaced them when one reaches ``replace`` (:func:`retired_budget_field`).
"""
from __future__ import annotations

from typing import Optional

# eval.aa_* fields of profiles and overrides before the attacks owned their budgets -> the budget each one sets.
LEGACY_BUDGET_FIELDS = {"aa_apgd_iters": "apgd_iters", "aa_targets": "targets", "aa_fab_iters": "fab_iters",
                        "aa_square_queries": "square_queries"}


def upgrade_eval(values: dict, budgets=()) -> dict:
    """``values`` (eval settings: a recorded config's eval section or overrides) with legacy aa_* fields turned into
    eval.budgets entries, merged into ``values['budgets']`` (else ``budgets``, the base they override); values
    without aa_* fields are returned as they are."""
    legacy = {k: v for k, v in values.items() if k in LEGACY_BUDGET_FIELDS}
    if not legacy:
        return values
    merged = dict(tuple(b) for b in values.get("budgets", budgets))
    merged.update({LEGACY_BUDGET_FIELDS[k]: v for k, v in legacy.items()})
    out = {k: v for k, v in values.items() if k not in LEGACY_BUDGET_FIELDS}
    out["budgets"] = tuple(merged.items())
    return out


def retired_budget_field(key: str, value) -> Optional[str]:
    """The error for an eval.aa_* key given to ``replace`` (apply_overrides translates them itself)."""
    if key not in LEGACY_BUDGET_FIELDS:
        return None
    return (f"eval.{key} is now a budget of the attacks that use it: set eval.budgets, e.g. "
            f"[['{LEGACY_BUDGET_FIELDS[key]}', {value!r}]] (apply_overrides translates eval.aa_* itself)")
