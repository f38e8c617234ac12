"""The one reader of the verdicts (genrobust.reporting.verdicts) on copies of the committed results/cpu metrics files:
05's subjects come from each comparison's verdict_record only (the fields copied beside it are not read). (That the
reader never reads the rendered report is structural: sections imports verdicts, and tests/test_layout.py refuses a
circle.)"""
import json
import shutil
from pathlib import Path

from genrobust.reporting.verdicts import claim_verdicts

CPU = Path(__file__).resolve().parents[1] / "results" / "cpu"


def _copy(dst: Path) -> Path:
    """The metrics files without verdicts.json: the reader takes 05's claims from the file itself."""
    dst.mkdir(parents=True)
    for f in CPU.glob("0*.json"):
        shutil.copy(f, dst / f.name)
    return dst


def _edit_comparisons(path: Path, fn) -> None:
    rec = json.loads(path.read_text())
    for claim in rec["claims"].values():
        for comp in claim["comparisons"]:
            fn(comp)
    path.write_text(json.dumps(rec))


def _ablations(directory: Path) -> dict:
    return {c.claim: [v.decision for v in c.subjects] for c in claim_verdicts(directory)
            if c.notebook == "05_ablations"}


def test_05_subjects_come_from_the_verdict_record_only(tmp_path):
    base, copied, record = _copy(tmp_path / "base"), _copy(tmp_path / "copied"), _copy(tmp_path / "record")
    before = _ablations(base)
    assert sum(map(len, before.values())) >= 5 and any(d != ["not established"] for d in before.values())

    def contradict_the_copies(comp):
        if "verdict_record" in comp:
            comp.update(verdict="contradicted", ci=[9.0, 9.0], p=0.0, p_adjusted=0.0, why="rewritten")
    _edit_comparisons(copied / "05_ablations.json", contradict_the_copies)
    assert _ablations(copied) == before

    def contradict_the_records(comp):  # negative control: the record itself is what the reader reads
        if "verdict_record" in comp:
            comp["verdict_record"]["decision"] = "contradicted"
    _edit_comparisons(record / "05_ablations.json", contradict_the_records)
    after = _ablations(record)
    assert after != before and all(set(d) <= {"contradicted"} for d in after.values())

