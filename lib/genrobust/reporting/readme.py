"""README's results table (paper vs ours), its verdicts table and its findings, generated from a profile's committed metrics
files and :mod:`genrobust.core.paper`, so that no number or verdict in them is typed by hand.
``genrobust report --profile cpu --readme`` rewrites the blocks between the markers; tests/test_docs.py fails while
README's blocks differ from the files."""
from __future__ import annotations

import re
from pathlib import Path

from ..core import paper
from ..store.io import ResultsError, read_json, write_text
from ..store.paths import project_root, results_dir
from .changes import claim_verdicts
from .metrics_files import schema_problem

START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
V_START, V_END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
F_START, F_END = "<!-- findings:start -->", "<!-- findings:end -->"
CLASSIFIERS = ("generative", "softmax")


def _strong_worst(acc: dict, kind: str) -> list[dict]:
    """The per-example worst cases of ``kind`` at the eps where more than the paper's attack ran (ascending eps)."""
    return [w for w in acc["worst_case"][kind] if w["eps"] > 0 and len(w["attacks"]) > 1]


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
        cal, acc, gen = (read_json(d / f"{n}.json") for n in ("02_calibration", "03_accuracy", "04_generation_fid"))
    except ResultsError as e:
        raise ResultsError(f"README's results table needs notebooks 02-04's metrics: {e}") from None
    for name, rec in zip(("02_calibration", "03_accuracy", "04_generation_fid"), (cal, acc, gen)):
        if schema_problem(rec):
            raise ResultsError(f"{d / name}.json: {schema_problem(rec)}")
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


def verdicts_table(profile: str = "cpu", directory: Path | None = None) -> str:
    """One row per claim the notebooks test: the paper's claim, our decision under the one rule, and the subjects
    decided, from the stored verdicts of 03-05 (files written before verdicts were stored: the same rule on their
    stored data, as REPORT.md does; :func:`genrobust.reporting.changes.claim_verdicts`)."""
    rows = []
    for c in claim_verdicts(Path(directory) if directory is not None else results_dir(profile)):
        if c.notebook == "05_ablations":  # the claim's own reason (REPORT.md's claims section)
            rows.append((c.source, c.text, c.decision, c.why))
            continue
        decided = "; ".join(f"{v.subject}: {v.decision} ({v.fmt(v.effect)}, p = {v.p:.2g})" for v in c.subjects
                            if v.decision != "not established")
        ns = sorted({v.evidence["n"] for v in c.subjects if v.evidence.get("n")})
        undecided = "none decided" + (f" at n = {', '.join(f'{n:,}' for n in ns)}" if ns else "") + \
            (f" ({c.subjects[0].note})" if c.subjects and c.subjects[0].note else "")
        rows.append((c.source, c.text, c.decision, decided or undecided))
    lines = ["| source | claim | ours | decided subjects |", "|---|---|---|---|"]
    lines += [f"| {s} | {c} | **{o}** | {w} |" for s, c, o, w in rows]
    return "\n".join(lines)


def findings_list(profile: str = "cpu", directory: Path | None = None) -> str:
    """README's findings: one numbered item per decided claim (supported, contradicted or mixed) with each
    subject's stored verdict rendered (effect, 95% interval, p and Holm p, test, n), then one item naming the claims
    not established and the smallest effect their n could have detected. Rendered from the stored verdicts only."""
    d = Path(directory) if directory is not None else results_dir(profile)
    claims = claim_verdicts(d)
    commits = ", ".join(dict.fromkeys(c.commit[:7] for c in claims))
    items, undecided = [], []
    for c in claims:
        if c.decision in ("supported", "contradicted", "mixed"):
            subjects = "; ".join(v.render() for v in c.subjects)
            items.append(f"**{c.source}: {c.text} -- {c.decision}.** {subjects or c.why}")
            continue
        notes = dict.fromkeys(v.note for v in c.subjects if v.note)
        det = [v for v in c.subjects if v.detectable is not None]
        if notes or not det:  # e.g. too few bootstrap replicates for an interval: the reason, not a size
            can = f" ({'; '.join(notes) or c.why})"
        else:
            best = min(det, key=lambda v: v.detectable)
            n = best.evidence.get("n")
            can = (f": {'at n = ' + format(n, ',') + ' ' if n else ''}only an effect of about "
                   f"{best.fmt(best.detectable).lstrip('+')} or more could be detected")
        undecided.append(f"{c.source}, {c.text}{can}")
    if undecided:
        items.append("**Not established at this n** (no subject decided under the rule below): " +
                     "; ".join(undecided) + ".")
    return (f"From the metrics files of results/{d.name} (notebooks 03-05 at commit {commits}):\n\n" +
            "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1)))


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
    for start, end, new in ((START, END, results_table(profile)), (V_START, V_END, verdicts_table(profile)),
                            (F_START, F_END, findings_list(profile))):
        text = text.replace(f"{start}\n{readme_block(text, start, end)}\n{end}", f"{start}\n{new}\n{end}")
    return write_text(path, text)
