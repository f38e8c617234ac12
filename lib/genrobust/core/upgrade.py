"""Older files in today's form: every compatibility rule of genrobust in one place (as timm keeps its deprecations in
one table): metrics files and verdicts.json of older schemas, eval.aa_* configs, older unit keys, retired
claim ids.

A reader calls one function of this module once, where it reads, and works on today's form only:

    upgrade_metrics(record, name)    a metrics file of results/<profile>/ (schema_version 1-5) -> schema 5's form
    upgrade_verdicts(record, name)   results/<profile>/verdicts.json (schema_version 1-2) -> schema 2's form
    upgrade_eval(values)             a recorded config's eval section (or overrides) with eval.aa_* -> eval.budgets
    unit_key_before_budgets(key, v)  the key an AutoAttack unit was stored under before the attacks owned budgets
    RETIRED_CLAIMS                   the claim ids of older stored verdicts that no longer name a claim

:data:`CHANGES` says what changed at each version and what the upgrade does about it; a file of a version this
code does not know is refused with one line (:func:`schema_problem`), never guessed at. Pure data transforms: no I/O,
no verdicts computed here (a file without stored verdicts is judged from its evidence by the one verdict engine,
genrobust.measure.claims, through genrobust.reporting.verdicts).
"""
from __future__ import annotations

from typing import Optional

from .version import __version__

# ---------------------------------------------------------------------------------------------------------------
# Metrics files (results/<profile>/<notebook>.json): their schema_version, and what each version changed
SCHEMA_VERSION = 5
CHANGES = {
    1: "the files before versions were recorded (read as 1 when schema_version is absent)",
    2: "adds schema_version; 05's per-job cost-model seconds move from runtime.jobs to runtime.estimated_jobs "
       "(upgrade: renamed)",
    3: "stored verdicts (genrobust.measure.claims) in 03 and 04 ('verdicts') and 05 (a 'verdict_record' per "
       "comparison of 'claims'); 04 drops its prose 'conclusion' (upgrade: 03/04 without verdicts are judged from "
       "their evidence by today's rule; a 05 claim of the older rule becomes 'not established', its older reading "
       "kept beside it; 04's 'conclusion' dropped)",
    4: "04's 'paired' holds the half-subsampling replicates of each FID difference (issue 39), the evidence its "
       "verdicts are re-derived from (upgrade: none; without them Tab. 2 cannot be judged, and the report says so)",
    5: "05's comparisons store their verdict once, as 'verdict_record': schema 3-4 also copied its fields (verdict, "
       "ci, p, p_adjusted, why) beside it, which nothing read (upgrade: the copies dropped; issue 41)",
}
KNOWN_SCHEMAS = tuple(CHANGES)


def schema_problem(record: dict) -> Optional[str]:
    """None when this code knows ``record``'s schema_version, else the one-line reason it cannot be read."""
    version = record.get("schema_version", 1)
    if version not in KNOWN_SCHEMAS:
        return (f"schema_version {version!r}, which this genrobust ({__version__}) does not know (it reads "
                f"{', '.join(map(str, KNOWN_SCHEMAS))}); update genrobust, or re-run the notebook with this one")
    return None


def upgrade_metrics(record: dict, name: str) -> dict:
    """``record`` (a metrics file of a known schema_version, named ``name`` in messages) in today's form: a copy
    with every change of :data:`CHANGES` after its version applied, ``schema_version`` today's and
    ``upgraded_from`` its own version (absent when it was written in today's form). ValueError for an unknown
    version (:func:`schema_problem`)."""
    problem = schema_problem(record)
    if problem:
        raise ValueError(f"{name}: {problem}")
    version = record.get("schema_version", 1)
    if version == SCHEMA_VERSION:
        return record
    out = dict(record)  # shallow: every part an upgrade changes is replaced, never edited in place
    runtime = out.get("runtime")
    if version < 2 and isinstance(runtime, dict) and "jobs" in runtime:
        out["runtime"] = {("estimated_jobs" if k == "jobs" else k): v for k, v in runtime.items()}
    if version < 3:
        out.pop("conclusion", None)
        if out.get("claims"):
            out["claims"] = {key: _older_claim(claim, name) for key, claim in out["claims"].items()}
    if version < 5 and out.get("claims"):
        out["claims"] = without_copies(out["claims"])
    return {**out, "schema_version": SCHEMA_VERSION, "upgraded_from": version}


# the fields of a 05 comparison's verdict_record that schema 3-4 (and verdicts.json 1) copied beside it
COPIED_VERDICT_FIELDS = ("verdict", "ci", "p", "p_adjusted", "why")


def without_copies(claims: dict) -> dict:
    """05's claims ({claim: {..., "comparisons": [...]}}) with each comparison that holds a 'verdict_record' stripped
    of the copies of its fields (COPIED_VERDICT_FIELDS); a comparison without a record (not tested, or judged under
    the rule before stored verdicts) keeps its own 'verdict' and 'why'. A new dict; ``claims`` is not changed."""
    def strip(comp: dict) -> dict:
        if "verdict_record" not in comp:
            return comp
        return {k: v for k, v in comp.items() if k not in COPIED_VERDICT_FIELDS}
    return {key: {**claim, "comparisons": [strip(c) for c in claim["comparisons"]]} if claim.get("comparisons")
            else claim for key, claim in claims.items()}


# ---------------------------------------------------------------------------------------------------------------
# verdicts.json (genrobust.reporting.metrics_files.write_verdicts): its schema_version, and what each changed
VERDICTS_SCHEMA = 2
VERDICTS_CHANGES = {
    1: "every verdict of 03-05 re-derived from the metrics files' evidence (issue 39); 05's entry as "
       "evaluate_claims gave it, with copies of each verdict_record's fields beside it",
    2: "05's comparisons store their verdict once, as 'verdict_record' (upgrade: the copies dropped, as metrics "
       "schema 5)",
}


def upgrade_verdicts(record: dict, name: str) -> dict:
    """verdicts.json's ``record`` in today's form: a copy with 05's copied verdict fields dropped (schema 1),
    ``schema_version`` today's and ``upgraded_from`` its own; today's form is returned as it is. ValueError, one
    line naming ``name``, for a version this code does not know."""
    version = record.get("schema_version", 1)
    if version not in VERDICTS_CHANGES:
        raise ValueError(f"{name}: schema_version {version!r}, which this genrobust ({__version__}) does not know "
                         f"(it reads {', '.join(map(str, VERDICTS_CHANGES))}); update genrobust, or write it again "
                         "with this one (genrobust report)")
    if version == VERDICTS_SCHEMA:
        return record
    notebooks = {nb: {**entry, "claims": without_copies(entry["claims"])} if entry.get("claims") else entry
                 for nb, entry in (record.get("notebooks") or {}).items()}
    return {**record, "notebooks": notebooks, "schema_version": VERDICTS_SCHEMA, "upgraded_from": version}


def written_with_verdicts(record: dict) -> bool:
    """Whether the notebook that wrote ``record`` (as read, upgraded or not) stored its verdicts (schema 3 on)."""
    return record.get("upgraded_from", record.get("schema_version", 1)) >= 3


def _older_claim(claim: dict, name: str) -> dict:
    """A 05 claim judged under the rule before stored verdicts: its comparisons store the per-seed differences but
    no per-image scores, so today's rule cannot be applied to the claim as stored; 'not established', with the
    reason and its older reading kept apart (the report renders both)."""
    if claim.get("verdict") == "not tested":
        return claim
    comps = claim.get("comparisons") or [{}]
    why = (f"{name} predates the current rule and stores {len(comps[0].get('seed_diffs', []))} training seed(s) and "
           "no per-image scores, so the hierarchical bootstrap over seeds and images cannot be applied")
    return {**claim, "verdict": "not established", "why": why,
            "older_reading": f"{claim.get('verdict')}, {claim.get('why')}"}


# Claim ids of older stored verdicts that no longer name a claim (core/paper.CLAIMS): read only to show what changed
# (CHANGES.md), with what became of each.
RETIRED_CLAIMS = {
    "fig1_robust": ("Figure 1", "encoded until issue 39 as 'the generative classifier is more robust at every eps'; "
                                "the paper claims a crossover and a growing gap, now fig1_gap"),
}


# ---------------------------------------------------------------------------------------------------------------
# Configs: eval.aa_* fields of profiles, overrides and recorded configs before the attacks owned their budgets
AA_BUDGET_FIELDS = {"aa_apgd_iters": "apgd_iters", "aa_targets": "targets", "aa_fab_iters": "fab_iters",
                    "aa_square_queries": "square_queries"}  # field -> the budget it set


def upgrade_eval(values: dict, budgets=()) -> dict:
    """``values`` (eval settings: a recorded config's eval section or overrides) with aa_* fields turned into
    eval.budgets entries, merged into ``values['budgets']`` (else ``budgets``, the base they override); values
    without aa_* fields are returned as they are."""
    older = {k: v for k, v in values.items() if k in AA_BUDGET_FIELDS}
    if not older:
        return values
    merged = dict(tuple(b) for b in values.get("budgets", budgets))
    merged.update({AA_BUDGET_FIELDS[k]: v for k, v in older.items()})
    out = {k: v for k, v in values.items() if k not in AA_BUDGET_FIELDS}
    out["budgets"] = tuple(merged.items())
    return out


def retired_budget_field(key: str, value) -> Optional[str]:
    """The error for an eval.aa_* key given to ``replace`` (apply_overrides translates them itself)."""
    if key not in AA_BUDGET_FIELDS:
        return None
    return (f"eval.{key} is now a budget of the attacks that use it: set eval.budgets, e.g. "
            f"[['{AA_BUDGET_FIELDS[key]}', {value!r}]] (apply_overrides translates eval.aa_* itself)")


# ---------------------------------------------------------------------------------------------------------------
# Unit keys (genrobust.store.units): before the attacks owned their budgets, each AutoAttack unit was keyed by all
# four of AutoAttack's budgets. The computation is the same (autoattack() runs one attack; the others' budgets are
# unused), so a unit stored under that key is read and kept under today's key instead of being recomputed.
AA_KEYED_BY_ALL_BUDGETS = ("apgd-ce", "apgd-t", "fab-t", "square")   # the attacks whose keys changed
AA_BUDGETS = ("apgd_iters", "targets", "fab_iters", "square_queries")  # what their older keys held


def unit_key_before_budgets(key: dict, budget_values: dict) -> Optional[dict]:
    """The key ``key``'s unit had before the attacks owned their budgets (``budget_values``: {budget name: value}
    under the unit's eval config, genrobust.core.config.budget_values), for AutoAttack's four attacks; None for the
    others, whose keys did not change."""
    if key["attack"] not in AA_KEYED_BY_ALL_BUDGETS:
        return None
    return {**key, "budgets": {n: budget_values[n] for n in AA_BUDGETS}}
