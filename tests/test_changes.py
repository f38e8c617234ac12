"""Which verdicts changed between two results directories (genrobust.reporting.changes, `genrobust report
--changes-since`), on copies of the committed results/cpu metrics files: the same files change nothing, and a
worst case altered in one copy changes exactly the verdicts that read it, with the evidence and commit named; and
what the one reader of the verdicts (claim_verdicts) reads of 05's file."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genrobust.reporting.changes import changes_markdown, claim_verdicts, verdict_changes
from genrobust.reporting.findings import findings_markdown
from genrobust.reporting.readme import findings_table
from genrobust.reporting.report import build, render_markdown

ROOT = Path(__file__).resolve().parents[1]
CPU = ROOT / "results" / "cpu"


def _copy(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in CPU.glob("0*.json"):
        shutil.copy(f, dst / f.name)
    return dst


def _edit(path: Path, fn) -> None:
    rec = json.loads(path.read_text())
    fn(rec)
    path.write_text(json.dumps(rec))


def test_the_same_files_change_no_verdict(tmp_path):
    old, new = _copy(tmp_path / "old"), _copy(tmp_path / "new")
    changes = verdict_changes(old, new)
    assert len({c.claim for c in changes}) == len(claim_verdicts(new)) >= 11  # every claim of 03-05 listed
    assert not any(c.changed for c in changes)
    assert all(c.why == "same files" for c in changes if not c.subject)


def test_a_changed_worst_case_changes_its_verdicts_and_names_why(tmp_path):
    old, new = _copy(tmp_path / "old"), _copy(tmp_path / "new")

    def every_generative_image_survives_at_eps_1(rec):
        rec.pop("verdicts", None)  # judged by the rule from the (altered) flags, as an older file would be
        rec["provenance"]["git_commit"] = "f" * 40
        for run in rec["classifiers"]["generative"]["runs"]:
            if run["eps"] == 1.0 and run["role"] in ("strong", "paper"):
                run["robust"] = "1" * len(run["robust"])
    _edit(new / "03_accuracy.json", every_generative_image_survives_at_eps_1)
    _edit(old / "03_accuracy.json", lambda rec: rec.pop("verdicts"))  # both copies judged by today's rule
    changes = verdict_changes(old, new)
    row = next(c for c in changes if c.claim == "tab1_robust" and c.subject == "eps 1, worst case")
    assert row.changed and row.before.startswith("contradicted") and row.after.startswith("supported")
    claim = next(c for c in changes if c.claim == "tab1_robust" and not c.subject)
    assert "re-run at commit fffffff" in claim.why and "on the same models (weights digests equal)" in claim.why
    # negative control: softmax's own protocol gap and 04-05 read nothing that changed
    assert not any(c.changed for c in changes if c.claim in ("protocol_softmax", "tab2_fid", "tab1_clean"))
    assert findings_markdown(new) != findings_markdown(old)  # REPORT's long-form findings read the new files
    assert "at commit fffffff" in findings_markdown(new)
    assert findings_table(directory=new) != findings_table(directory=old)  # and README's table
    md = changes_markdown(old, new)
    assert md.count("\n") == len(changes) + 1 and "| yes |" in md


def _table_decisions(directory: Path) -> list[str]:
    rows = [r for r in findings_table(directory=directory).splitlines()[2:] if r.startswith("|")]
    return [r.split(" | ")[3].split("**")[1] for r in rows]


def _by_hand(subject_decisions: list[str]) -> str:
    """A claim's decision from its subjects', written out here (not genrobust's claim_decision)."""
    if len(set(subject_decisions)) == 1:
        return subject_decisions[0]
    return "mixed"


def test_readme_findings_table_renders_the_stored_decisions(tmp_path):
    """README's rows for notebook 03's claims equal the decisions read by hand from the raw verdicts.json (the
    re-derived verdicts, as committed); flipping one stored subject verdict flips that row and no other."""
    copy = _copy(tmp_path / "cpu")
    shutil.copy(CPU / "verdicts.json", copy / "verdicts.json")
    stored = json.loads((copy / "verdicts.json").read_text())["notebooks"]["03_accuracy"]["verdicts"]
    claims = list(dict.fromkeys(v["claim"] for v in stored))
    expect = [_by_hand([v["decision"] for v in stored if v["claim"] == c]) for c in claims]
    before = _table_decisions(copy)
    assert before[:len(claims)] == expect and len(before) > len(claims)  # 04-05's rows follow

    # negative control: tab1_clean has one subject (contradicted); stored as supported, its row (only) says so
    i = claims.index("tab1_clean")
    assert expect[i] == "contradicted"

    def flip(rec):
        for v in rec["notebooks"]["03_accuracy"]["verdicts"]:
            if v["claim"] == "tab1_clean":
                v["decision"] = "supported"
    _edit(copy / "verdicts.json", flip)
    after = _table_decisions(copy)
    assert after[i] == "supported" and after[:i] + after[i + 1:] == before[:i] + before[i + 1:]



def _ablations(directory: Path) -> dict:
    return {c.claim: [v.decision for v in c.subjects] for c in claim_verdicts(directory)
            if c.notebook == "05_ablations"}


def _each_comparison(fn):
    def edit(rec):
        for claim in rec["claims"].values():
            for comp in claim["comparisons"]:
                if "verdict_record" in comp:
                    fn(comp)
    return edit


def test_05_verdicts_are_read_from_the_verdict_record_only(tmp_path):
    """The one reader (genrobust.reporting.verdicts) takes 05's subjects from each comparison's verdict_record
    (no verdicts.json here: the file's own claims are read); the fields copied beside it are not read."""
    base, copied, record = _copy(tmp_path / "base"), _copy(tmp_path / "copied"), _copy(tmp_path / "record")
    before = _ablations(base)
    assert sum(map(len, before.values())) >= 5 and any(d != ["not established"] for d in before.values())
    _edit(copied / "05_ablations.json", _each_comparison(
        lambda comp: comp.update(verdict="contradicted", ci=[9.0, 9.0], p=0.0, p_adjusted=0.0, why="rewritten")))
    assert _ablations(copied) == before
    # negative control: the record itself is what the reader reads
    _edit(record / "05_ablations.json", _each_comparison(
        lambda comp: comp["verdict_record"].update(decision="contradicted")))
    after = _ablations(record)
    assert after != before and all(set(d) <= {"contradicted"} for d in after.values())

@pytest.mark.slow
def test_cli_changes_since(tmp_path):
    old = _copy(tmp_path / "old")
    root = tmp_path / "results"
    _copy(root / "cpu")
    env = {**os.environ, "GENROBUST_RESULTS": str(root), "PYTHONPATH": str(ROOT / "lib")}
    r = subprocess.run([sys.executable, "-m", "genrobust", "report", "--profile", "cpu", "--changes-since",
                        str(old)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root / "cpu" / "CHANGES.md")
    text = (root / "cpu" / "CHANGES.md").read_text()
    assert "| source | claim / subject | before | after |" in text and "| yes |" not in text
    assert "[CHANGES.md](CHANGES.md)" in render_markdown(build("cpu", root / "cpu", replot=False))  # REPORT.md links it
    (root / "cpu" / "CHANGES.md").unlink()
    assert "CHANGES.md" not in render_markdown(build("cpu", root / "cpu", replot=False))
    bad = subprocess.run([sys.executable, "-m", "genrobust", "report", "--profile", "cpu", "--changes-since",
                          str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode != 0 and "no such directory" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
