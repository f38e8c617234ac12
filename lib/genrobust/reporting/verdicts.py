"""The one reader of the verdicts of 03-05 (claim_verdicts -> ClaimVerdicts) from the stored records or verdicts.json;
everything that shows a verdict renders what it returns.

The one reader of the verdicts of notebooks 03-05: every claim they judge in one results directory, as
:class:`ClaimVerdicts`, from the stored records only. Per notebook, in this order: verdicts.json's re-derivation
from the file's evidence (where it judged that very file, same sha256), else the verdicts the file stores (05: the
``verdict_record`` of each comparison, their one stored form), else, for a file written before verdicts
were stored, the one verdict engine applied to its evidence (:func:`genrobust.reporting.metrics_files.
judge_notebook`, the same call verdicts.json makes). Older files arrive in today's form (genrobust.core.upgrade).

REPORT.md's sections and findings, README's table and CHANGES.md render what this returns; nothing here renders,
and nothing reads rendered text.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..core import paper
from ..core.upgrade import written_with_verdicts
from ..measure.claims import ClaimError, Verdict, claim_decision, claim_info
from ..store.io import ResultsError, sha256_file
from .metrics_files import VERDICTS_NAME, Source, judge_notebook, lacks_evidence, load_sources, read_verdicts

STORED_VERDICTS = ("03_accuracy", "04_generation_fid")  # their claims come from verdicts (05's from its claims)
ABLATIONS = "05_ablations"


@dataclasses.dataclass(frozen=True)
class ClaimVerdicts:
    """One claim's verdict in one results directory: the decision, why, and its subjects' stored verdicts
    (none where the file cannot be judged). ``stored``: False where the verdicts were computed from an older
    file's stored data (or the file could not be judged) rather than stored by the notebook."""
    source: str            # the paper's table, figure or section
    claim: str             # id: core.paper.CLAIMS or paper.ABLATION_CLAIMS
    text: str              # the paper's claim
    decision: str
    why: str
    subjects: tuple[Verdict, ...]
    stored: bool
    notebook: str
    commit: str
    models: tuple[tuple[str, str], ...] = ()   # (classifier, weights digest) the notebook evaluated; () for 05
    rule_commit: str = ""  # the commit whose rule re-derived them from the file's evidence (verdicts.json); "" if not
    # 05 only: each comparison's description (settings, metric, difference) with its Verdict (None: not tested, or
    # a file of the older rule, whose comparisons carry their own reading); the file's own older reading of the
    # claim where today's rule could not judge it; found: whether the file holds this claim at all
    comparisons: tuple[tuple[dict, Verdict | None], ...] = ()
    older_reading: str = ""
    found: bool = True


def judged_entry(src: Source) -> dict | None:
    """This notebook's entry of verdicts.json beside its metrics file (:func:`genrobust.reporting.metrics_files.
    judge_evidence`), when that file exists and was judged from this very file (same sha256); else None."""
    judged = read_verdicts(src.path.parent)
    entry = (judged or {}).get("notebooks", {}).get(src.notebook)
    if entry is None or not src.path.is_file() or entry.get("sha256") != sha256_file(src.path).hexdigest():
        return None
    return entry


def _rule_commit(src: Source) -> str:
    """The commit of verdicts.json where it re-derived this notebook's verdicts from the file's evidence, else ""."""
    entry = judged_entry(src) if src.ok else None
    if entry is None or "not_judged" in entry:
        return ""
    return (read_verdicts(src.path.parent) or {}).get("provenance", {}).get("git_commit", "unknown")


def notebook_verdicts(src: Source) -> tuple[list[Verdict], str]:
    """(verdicts, where they come from) of notebook 03's or 04's metrics file: those of verdicts.json, re-derived
    from the file's stored evidence by today's rule; where verdicts.json could not re-judge it, the notebook's own
    stored ones, marked so; for a file written before verdicts were stored (schema 1-2), the same rule applied to
    its stored per-example flags (03) or subsampling replicates (04)."""
    entry = judged_entry(src)
    if entry is not None and "verdicts" in entry:
        return _read(entry["verdicts"]), (f"{VERDICTS_NAME}: re-derived from {src.path.name}'s stored evidence by "
                                          "today's rule")
    if entry is not None and "verdicts" in src.record:
        return _read(src.record["verdicts"]), (f"NOT re-judged under today's rule ({entry['not_judged']}); the "
                                               f"verdicts {src.path.name} stored under the rule of commit "
                                               f"{src.commit[:7]}")
    if "verdicts" in src.record:
        return _read(src.record["verdicts"]), "stored in " + src.path.name
    try:
        found = judge_notebook(src.notebook, src.record)
    except (ClaimError, KeyError) as err:  # e.g. a 04 without replicates: nothing the rule can judge
        return [], f"cannot be judged: {lacks_evidence(src, err)}"
    return found, (f"{src.path.name} stores no verdicts (written before they were stored): computed by "
                   "genrobust.measure.claims from its stored data")


def _read(dicts: list[dict]) -> list[Verdict]:
    return [Verdict.from_dict(v) for v in dicts]


def _models(src: Source) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((kind, ck.get("weights_sha256", "")) for kind, ck in
                        (src.record.get("checkpoints") or {}).items()))


def _notebook_claims(src: Source) -> list[ClaimVerdicts]:
    """The claims of 03 or 04, one per claim id, each decided by the engine (claim_decision) from its subjects."""
    verdicts = notebook_verdicts(src)[0]
    rule = _rule_commit(src)
    out = []
    for claim in dict.fromkeys(v.claim for v in verdicts):
        mine = tuple(v for v in verdicts if v.claim == claim)
        decision, why = claim_decision(mine)
        source, text = claim_info(claim)
        out.append(ClaimVerdicts(source, claim, text, decision, why, mine, "verdicts" in src.record or bool(rule),
                                 src.notebook, src.commit, _models(src), rule))
    return out


def _comparison(comp: dict) -> tuple[dict, Verdict | None]:
    """One stored 05 comparison: its description, and its Verdict from ``verdict_record`` (older files' copies of
    its fields beside it are dropped by genrobust.core.upgrade); one without a record (not tested, or the older
    rule) as it is stored."""
    if "verdict_record" not in comp:
        return comp, None
    return {k: v for k, v in comp.items() if k != "verdict_record"}, Verdict.from_dict(comp["verdict_record"])


def ablation_claims(src: Source) -> list[ClaimVerdicts]:
    """The claims of Figs. 5-8 (paper.ABLATION_CLAIMS, in its order) from 05's file: verdicts.json's claims where
    it re-derived them from this file's per-seed AUROCs, else the file's own. Each claim's decision and why are the
    engine's (evaluate_claims' claim_decision, or the upgrade's for a file of the older rule); its subjects the
    comparisons' verdict records."""
    rule = _rule_commit(src)
    judged = (judged_entry(src) or {}).get("claims") if rule else None
    claims = (judged or src.record.get("claims") or {}) if src.ok else {}
    stored = src.ok and written_with_verdicts(src.record)
    out = []
    for key, (figure, text) in paper.ABLATION_CLAIMS.items():
        c = claims.get(key)
        comps = tuple(_comparison(comp) for comp in (c or {}).get("comparisons", ()))
        subjects = tuple(v for _, v in comps if v is not None)
        decision = (c["verdict"] if c else "not in this run") if src.ok else src.status
        why = (c or {}).get("why") or "see REPORT.md"
        out.append(ClaimVerdicts(figure, key, text, decision, why, subjects, stored, src.notebook, src.commit, (),
                                 rule, comps, (c or {}).get("older_reading", ""), c is not None))
    return out


def claim_verdicts(directory: str | os.PathLike) -> list[ClaimVerdicts]:
    """Every claim notebooks 03-05 judge, in the order of README's verdicts table. A missing or unreadable 03 or
    04 file is a ResultsError naming it (05's claims then read 'not run')."""
    sources = load_sources(Path(directory))
    out: list[ClaimVerdicts] = []
    for nb in STORED_VERDICTS:
        src = sources[nb]
        if not src.ok:
            raise ResultsError(f"the verdicts need {src.path} ({src.status})")
        out += _notebook_claims(src)
    return out + ablation_claims(sources[ABLATIONS])
