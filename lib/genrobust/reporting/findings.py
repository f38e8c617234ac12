"""The findings' long form (REPORT.md) from the verdicts; the second looks at the evidence.

The findings in long form (REPORT.md's "Findings, long form"; README holds them as one compact table): one item
per decided claim with each subject's verdict rendered, then the claims not established with what their n could
have detected; and the verdicts whose evidence grew after a look at it (:data:`SECOND_LOOKS`). Rendered from
:func:`genrobust.reporting.verdicts.claim_verdicts` only.
"""
from __future__ import annotations

import os
from pathlib import Path

from .metrics_files import VERDICTS_NAME, read_verdicts
from .verdicts import claim_verdicts


def findings_markdown(directory: str | os.PathLike) -> str:
    """The findings in long form (REPORT.md; README holds the compact table): one numbered item per decided claim
    (supported, contradicted or mixed) with each subject's verdict rendered (effect, 95% interval, p and Holm p,
    test, n, scale), then one item per claim not established with, per subject, the smallest effect its n could
    have detected at the level Holm tested it at. Rendered from the stored (or re-derived) verdicts only."""
    d = Path(directory)
    claims = claim_verdicts(d)
    commits = ", ".join(dict.fromkeys(c.commit[:7] for c in claims))
    rules = ", ".join(dict.fromkeys(c.rule_commit[:7] for c in claims if c.rule_commit))
    judged = read_verdicts(d) is not None
    items, undecided = [], []
    for c in claims:
        if judged and not c.rule_commit:  # verdicts.json could not re-derive it: the notebook's older reading
            look = f"NOT re-judged under the corrected rule ({c.notebook}.json lacks its evidence); its stored reading"
            items.append(f"**{c.source}: {c.text} -- {c.decision}** ({look}). " +
                         "; ".join(v.render() for v in c.subjects))
            continue
        if c.decision in ("supported", "contradicted", "mixed"):
            subjects = "; ".join(v.render() for v in c.subjects)
            look = second_look(d.name, c.claim)
            items.append(f"**{c.source}: {c.text} -- {c.decision}.** {subjects or c.why}" +
                         (f" *Note: {look}.*" if look else ""))
            continue
        notes = dict.fromkeys(v.note for v in c.subjects if v.note)
        det = [v for v in c.subjects if v.detectable is not None]
        if notes or not det:  # e.g. too few replicates for an interval: the reason, not a size
            can = f" ({'; '.join(notes) or c.why})"
        else:  # per subject, at the level Holm tested it at (not the smallest across subjects)
            can = ": " + "; ".join(
                f"{v.subject}: {v.fmt(v.effect)}, only {v.fmt(v.detectable).lstrip('+')} or more detectable"
                + (f" with {v.evidence['seeds']} seeds" if v.evidence.get("seeds") else
                   f" at n = {v.evidence['n']:,}" if v.evidence.get("n") else "")
                + (f", level {v.evidence['alpha']:.3g}" if v.evidence.get("alpha") else "") for v in det)
        look = second_look(d.name, c.claim)
        undecided.append(f"{c.source}, {c.text}{can}" + (f" (note: {look})" if look else ""))
    if undecided:
        items += [f"**Not established at this n** (no subject decided): {u}." for u in undecided]
    return (f"From the metrics files of results/{d.name} (notebooks 03-05 at commit {commits})"
            + (f", judged by the rule of commit {rules} ({VERDICTS_NAME})" if rules else "") + ":\n\n" +
            "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1)))


# Verdicts whose evidence grew after a look at it: (profile, claim) -> what happened. results/cpu's worst case ran
# on 130 images first; n_strong went to 250 after that look decided less (docs/verdicts-2026-12-05.md), an
# unplanned second look, so the p values of these claims at n = 250 are somewhat optimistic.
SECOND_LOOKS = {("cpu", claim): "n_strong raised from 130 to 250 after a look at n = 130 that decided less "
                                "(docs/verdicts-2026-12-05.md): a second, unplanned look; its p values are somewhat "
                                "optimistic" for claim in ("tab1_robust", "protocol_generative", "protocol_softmax")}


def second_look(profile: str, claim: str) -> str:
    """What :data:`SECOND_LOOKS` says of this claim of this profile ("" if nothing)."""
    return SECOND_LOOKS.get((profile, claim), "")


def scale_words(directory: Path) -> str:
    """'cpu profile, one training run per arm (Figs. 5-8: 5 training runs per setting)' from the stored verdicts."""
    scales = list(dict.fromkeys(v.scale for c in claim_verdicts(directory) for v in c.subjects if v.scale))
    return "; ".join(scales) or f"{Path(directory).name} profile"
