"""README's results table (paper vs ours) and compact findings table from a profile's metrics files.

README's results table (paper vs ours) and its findings table, generated from a profile's committed metrics
files and :mod:`genrobust.core.paper`, so that no number or verdict in them is typed by hand.
``genrobust report --profile cpu --readme`` rewrites the blocks between the markers; tests/test_docs.py fails while
README's blocks differ from the files."""
from __future__ import annotations

import re
from pathlib import Path

from ..core import paper
from ..measure.record import EvalRecord
from ..store.io import ResultsError, write_text
from ..store.paths import project_root, results_dir
from .findings import second_look
from .metrics_files import read_metrics, read_verdicts
from .verdicts import claim_verdicts

START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
F_START, F_END = "<!-- findings:start -->", "<!-- findings:end -->"
CLASSIFIERS = ("generative", "softmax")


def _strong_worst(acc: dict, kind: str) -> list[dict]:
    """The per-example worst cases of ``kind`` at the eps where more than the paper's attack ran (ascending eps)."""
    worst = EvalRecord.from_dict(acc["classifiers"][kind]).worst_cases()
    return [w.to_dict() for w in worst if w.eps > 0 and len(w.attacks) > 1]


def _fid(gen: dict, kind: str, classifier: str) -> str:
    cells = sorted((c for c in gen["cells"] if c["kind"] == kind and c["classifier"] == classifier),
                   key=lambda c: c["steps"])
    return ", ".join(f"{c['fid']:.1f}" for c in cells)


def _paper_fid(kind: str, classifier: str) -> str:
    return ", ".join(f"{paper.TAB2[key][classifier][kind]:.2f}" for key in sorted(k for k in paper.TAB2 if k != "source"))


def results_table(profile: str = "cpu", directory: Path | None = None) -> str:
    """The markdown table of README's "Results" section from results/<profile>/02-04's metrics files."""
    d = Path(directory) if directory is not None else results_dir(profile)
    try:
        cal, acc, gen = (read_metrics(d / f"{n}.json") for n in ("02_calibration", "03_accuracy", "04_generation_fid"))
    except ResultsError as e:  # missing, unreadable, or of a schema_version this code does not know
        raise ResultsError(f"README's results table needs notebooks 02-04's metrics: {e}") from None
    eps = paper.TAB1["eps"]
    rows = [("generative classifier, clean test accuracy after calibration (Tab. 3)",
             f"{100 * paper.TAB3['after']['test']:.2f}%",
             f"{100 * cal['accuracy']['test_after']:.1f}% ({cal['n']['test']:,} images)")]
    tab1 = {r["classifier"]: r for r in acc["tab1"]}
    for kind in CLASSIFIERS:
        t, worst = tab1[kind], _strong_worst(acc, kind)
        attack, robust = t["paper's attack"], t["ours robust, paper's attack %"]
        rows.append((f"Tab. 1 {kind}: clean / robust at L2 {eps:g}, {attack}",
                     f"{100 * paper.TAB1[kind]['clean']:.2f} / {100 * paper.TAB1[kind]['robust']:.2f}",
                     f"{t['ours clean %']:.1f} / {robust:.1f} (n = {t['n paper attack']:,})"))
        at = " / ".join(f"{w['eps']:g}" for w in worst)
        values = " / ".join(f"{100 * w['accuracy']:.1f}" for w in worst)
        ns = ", ".join(f"{n:,}" for n in sorted({w["n"] for w in worst}))
        rows.append((f"Tab. 1 {kind}: worst case at L2 {at}", "—", f"{values} (n = {ns})"))
    steps = " / ".join(str(k[0]) for k in sorted(k for k in paper.TAB2 if k != "source"))
    for kind, label in (("samples", f"samples, {steps} PGD steps"), ("counterfactuals", "counterfactuals")):
        rows.append((f"Tab. 2 FID, {label}: generative / softmax",
                     f"{_paper_fid(kind, 'generative')} / {_paper_fid(kind, 'softmax')}",
                     f"{_fid(gen, kind, 'generative')} / {_fid(gen, kind, 'softmax')}"))
    a = gen["anchor"]
    rows.append(("FID(CIFAR-10 test, train), the sanity anchor", "—",
                 f"{a['fid']:.1f} (N = {a['n']:,} vs {a['n_reference']:,})"))
    lines = [f"| claim | paper | ours ({profile} profile) |", "|---|---|---|"]
    lines += [f"| {c} | {p} | {o} |" for c, p, o in rows]
    return "\n".join(lines)


# the claims' names in README's compact table (the claims in full: core/paper.CLAIMS, REPORT.md)
SHORT = {
    "tab1_robust": "Tab. 1: generative more robust (worst case over every attack)",
    "tab1_robust_paper": "Tab. 1: generative more robust (paper's own attacks, eps 0.5)",
    "fig1_gap": "Fig. 1: the gap grows with eps (softmax ahead at small eps)",
    "tab1_clean": "Tab. 1: generative lower clean accuracy",
    "protocol_generative": "Sec. 3.2: Eq. 11-12 finds the generative worst case",
    "protocol_softmax": "Sec. 3.2: PGD-CE finds the softmax worst case",
    "tab2_fid": "Tab. 2: generative lower FID (samples, counterfactuals)",
    "fig1_robust": "Fig. 1 (retired encoding): more robust at every eps",
}


def _paper_says(claim: str) -> str:
    """What the paper reports for a claim, from core/paper (numbers) or its figure (a curve)."""
    t1, e = paper.TAB1, paper.TAB1["eps"]
    if claim in ("tab1_robust", "tab1_robust_paper"):
        return f"{100 * t1['generative']['robust']:.2f} vs {100 * t1['softmax']['robust']:.2f}% at {e:g}"
    if claim == "tab1_clean":
        return f"{100 * t1['generative']['clean']:.2f} vs {100 * t1['softmax']['clean']:.2f}%"
    if claim == "tab2_fid":
        cells = [(k, c) for c in ("samples", "counterfactuals") for k in sorted(x for x in paper.TAB2 if x != "source")]
        return ", ".join(f"{paper.TAB2[k]['generative'][c] - paper.TAB2[k]['softmax'][c]:+.1f}" for k, c in cells)
    if claim.startswith("protocol_"):
        return "assumed (its evaluation)"
    return "a curve"


def _ours(c) -> str:
    """Each subject's effect, compactly: 'eps 0.25 -2.0, eps 0.5 -5.6, eps 1 -9.2 points' (05's subjects are named
    in REPORT.md: effects only, in the order of its comparisons)."""
    if not c.subjects:
        return c.why
    effects = [v.fmt(v.effect) for v in c.subjects]
    unit = next((u for u in (" points per unit eps", " points") if all(x.endswith(u) for x in effects)), "")
    names = ["" if c.notebook == "05_ablations" else v.subject.split(", paper")[0].split(", worst")[0] + " "
             for v in c.subjects]
    return ", ".join(f"{n}{x.removesuffix(unit)}" for n, x in zip(names, effects)) + unit


def findings_table(profile: str = "cpu", directory: Path | None = None) -> str:
    """README's findings as one compact table, one row per claim: the claim, what the paper reports, our effect per
    subject, and our decision at this scale (mixed with its counts); intervals, p, Holm and detectable effects are
    in REPORT.md's long form. Rendered from the stored (or re-derived) verdicts only
    (:func:`genrobust.reporting.verdicts.claim_verdicts`)."""
    d = Path(directory) if directory is not None else results_dir(profile)
    claims = claim_verdicts(d)
    judged = read_verdicts(d) is not None
    scales = list(dict.fromkeys(v.scale for c in claims for v in c.subjects if v.scale))
    lines = ["| claim | paper | ours | verdict at this scale |", "|---|---|---|---|"]
    for c in claims:
        name = SHORT.get(c.claim, f"{c.source.replace('Figure', 'Fig.')}: {c.text}")
        verdict = f"**{c.decision}**" + (f" ({c.why})" if c.decision == "mixed" else "") + (
            f"; NOT re-judged: {c.notebook}'s stored verdict under the older rule" if judged and not c.rule_commit
            else "") + ("; after a second look (n 130 -> 250)" if second_look(d.name, c.claim) else "")
        lines.append(f"| {name} | {_paper_says(c.claim)} | {_ours(c)} | {verdict} |")
    return "\n".join(lines + ["", f"At this scale: {'; '.join(scales) or d.name + ' profile'}. Long form (intervals, "
                               f"p, Holm, what each n could detect): [results/{d.name}/REPORT.md](results/{d.name}/"
                               "REPORT.md#findings-long-form)."])


def readme_block(text: str, start: str = START, end: str = END) -> str:
    """The block between README's markers."""
    found = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    if found is None:
        raise ResultsError(f"README has no {start} ... {end} block; put the markers around the generated table")
    return found.group(1)


def update_readme(profile: str = "cpu", path: Path | None = None) -> Path:
    """Rewrite README's findings, results and verdicts blocks from the metrics files (atomic). Returns README's path."""
    path = Path(path) if path is not None else project_root() / "README.md"
    text = path.read_text()
    for start, end, new in ((START, END, results_table(profile)), (F_START, F_END, findings_table(profile))):
        text = text.replace(f"{start}\n{readme_block(text, start, end)}\n{end}", f"{start}\n{new}\n{end}")
    return write_text(path, text)
