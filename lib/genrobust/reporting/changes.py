"""Which verdicts changed between two results directories and why (`genrobust report --changes-since DIR`)

Every claim's verdict in one results directory (:func:`claim_verdicts`, what README's verdicts table renders), and
which verdicts changed between two results directories of a profile and why (:func:`verdict_changes`), e.g. the
committed results/cpu before and after a regeneration.

Why a verdict changed is read from the two files, not written by hand: the evidence each subject's test saw (n, the
attacks, training seeds, bootstrap replicates), the commit and models the files come from, and the rule (a file
written before verdicts were stored is judged by today's rule from its stored data where it can be, and named as
not judgeable where it cannot)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..core.upgrade import RETIRED_CLAIMS
from ..measure.claims import Verdict
from ..store.io import write_text
from .verdicts import ClaimVerdicts, claim_verdicts

CHANGES_NAME = "CHANGES.md"  # which verdicts changed since an older copy (REPORT.md links it while it exists)
# evidence fields compared between two verdicts of one subject, with how a change is named
# (the resampling's replicates: "n_boot" for the older bootstrap, "n_rep" for half-subsamples)
EVIDENCE = ((("n",), "n"), (("seeds",), "training seeds"), (("n_boot", "n_rep"), "resampling replicates"),
            (("attacks",), "attacks"))


def _short(v: Verdict | None) -> str:
    """'contradicted (-10.8 points, p = 0.00052, n = 130)' -- one subject's verdict in a table cell."""
    if v is None:
        return "not judged"
    n = v.evidence.get("n")
    bits = [v.fmt(v.effect)] + ([f"p {v.p_text()}"] if v.p is not None else []) + \
        ([f"n = {n:,}"] if n else []) + ([f"seeds {v.evidence['seeds']}"] if v.evidence.get("seeds") else [])
    scale = " at this scale" if v.scale and v.decision != "not established" else ""
    return f"{v.decision}{scale} ({', '.join(bits)})"


def evidence_changes(before: Verdict | None, after: Verdict | None) -> list[str]:
    """What differs in the evidence of one subject's two verdicts: 'n 130 -> 250', 'training seeds 2 -> 5', ..."""
    if before is None or after is None:
        return []
    out = []
    for keys, name in EVIDENCE:
        a, b = (next((e[k] for k in keys if e.get(k) is not None), None) for e in (before.evidence, after.evidence))
        if a != b and not (a is None and b is None):
            if isinstance(a, list) or isinstance(b, list):
                out.append(f"{name}: {', '.join(map(str, a or ())) or 'none'} -> {', '.join(map(str, b or ()))}")
            else:
                out.append(f"{name} {a if a is not None else 'not stored'} -> {b}")
    if before.test != after.test:
        out.append(f"test: {before.test} -> {after.test}")
    return out


@dataclasses.dataclass(frozen=True)
class Change:
    """One claim, or one of its subjects, before and after."""
    source: str
    claim: str
    subject: str           # "" for the claim's own decision
    before: str
    after: str
    changed: bool
    why: str


def _claim_why(old: ClaimVerdicts | None, new: ClaimVerdicts) -> str:
    if old is None:
        return "new claim: not judged in the older results"
    reasons = []
    if not old.subjects and new.subjects:
        reasons.append(f"changed rule: the older {old.notebook} could not be judged ({old.why}); the new one stores "
                       "its verdicts")
    elif not old.stored and new.stored:
        reasons.append("same rule (the older file's verdicts computed from its stored data); new evidence")
    if new.rule_commit and new.rule_commit != old.rule_commit:
        reasons.append(f"changed rule: re-derived from {new.notebook}'s stored evidence by the rule of commit "
                       f"{new.rule_commit[:7]} (issue 39)")
    if old.commit != new.commit:
        reasons.append(f"re-run at commit {new.commit[:7]} (was {old.commit[:7]})")
        if old.models and new.models:  # equal weights digests: what changed is the evaluation, not the models
            reasons.append("on the same models (weights digests equal)" if old.models == new.models else
                           "on retrained models (weights digests differ)")
    return "; ".join(reasons) or "same files"


def verdict_changes(old_dir: str | os.PathLike, new_dir: str | os.PathLike) -> list[Change]:
    """Each claim's decision and each subject's verdict in ``old_dir`` and ``new_dir``, whether it changed, and
    what differs in its evidence and provenance."""
    return _compare(claim_verdicts(old_dir), claim_verdicts(new_dir))


def _compare(older: list[ClaimVerdicts], newer: list[ClaimVerdicts]) -> list[Change]:
    old = {c.claim: c for c in older}
    out = []
    for new in newer:
        before = old.get(new.claim)
        out.append(Change(new.source, new.claim, "", before.decision if before else "not judged", new.decision,
                          before is None or before.decision != new.decision, _claim_why(before, new)))
        old_subjects = {v.subject: v for v in (before.subjects if before else ())}
        for v in new.subjects:
            b = old_subjects.get(v.subject)
            why = evidence_changes(b, v) or (["not judged before"] if b is None else ["same evidence sizes"])
            out.append(Change(new.source, new.claim, v.subject, _short(b), _short(v),
                              b is None or b.decision != v.decision, "; ".join(why)))
        for subject in old_subjects.keys() - {v.subject for v in new.subjects}:
            out.append(Change(new.source, new.claim, subject, _short(old_subjects[subject]), "not judged", True,
                              "not a subject of the newer results (its evidence is not there)"))
    for gone in (c for c in older if c.claim not in {n.claim for n in newer}):  # e.g. a retired claim id
        why = RETIRED_CLAIMS[gone.claim][1] if gone.claim in RETIRED_CLAIMS else "not a claim of the newer results"
        out.append(Change(gone.source, gone.claim, "", gone.decision, "retired", True, why))
    return out


def changes_markdown(old_dir: str | os.PathLike, new_dir: str | os.PathLike) -> str:
    """The changes as a markdown table: one bold row per claim, then its subjects."""
    return _markdown(verdict_changes(old_dir, new_dir))


def _markdown(changes: list[Change]) -> str:
    lines = ["| source | claim / subject | before | after | changed | what differs |", "|---|---|---|---|---|---|"]
    for c in changes:
        name = f"`{c.claim}`" if not c.subject else f"&nbsp;&nbsp;{c.subject}"
        before, after = (f"**{c.before}**", f"**{c.after}**") if not c.subject else (c.before, c.after)
        lines.append(f"| {c.source if not c.subject else ''} | {name} | {before} | {after} | "
                     f"{'yes' if c.changed else 'no'} | {c.why} |")
    return "\n".join(lines)


def write_changes(old_dir: str | os.PathLike, new_dir: str | os.PathLike) -> Path:
    """Write ``new_dir``/CHANGES.md (atomic): the commits of both copies, how to read the table, and the table.
    REPORT.md links it while it exists."""
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    older, newer = claim_verdicts(old_dir), claim_verdicts(new_dir)  # each directory read once
    commits = {name: ", ".join(dict.fromkeys(c.commit[:7] for c in claims))
               for name, claims in (("old", older), ("new", newer))}
    rules = ", ".join(dict.fromkeys(c.rule_commit[:7] for c in newer if c.rule_commit))
    intro = (f"From the older results (notebooks 03-05 at commit {commits['old']}) to these (commit "
             f"{commits['new']}{f'; re-judged from their stored evidence by the rule of commit {rules}' if rules else ''}"
             f"). Generated by `genrobust report --profile {new_dir.name} --changes-since DIR` "
             "(genrobust.reporting.changes) from the two copies' metrics files. A bold row is a claim's decision; the "
             "rows under it are its subjects, each with its stored verdict (or, for a file written before verdicts "
             "were stored, today's rule applied to its stored data), and what differs in the evidence its test saw. "
             "'changed rule' marks a file today's rule could not judge. 'At this scale': "
             + ("; ".join(dict.fromkeys(v.scale for c in newer for v in c.subjects if v.scale)) or "not recorded")
             + ".")
    text = "\n".join([f"# Verdict changes -- results/{new_dir.name}", "", intro, "", _markdown(_compare(older, newer)),
                      ""])
    return write_text(new_dir / CHANGES_NAME, text)
