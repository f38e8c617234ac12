"""The committed results files regenerate byte for byte from the committed evidence (issue 41, "Done when"):
REPORT.md, README.md (its two generated tables) and results/cpu/CHANGES.md, rendered into a temporary copy by the
functions `genrobust report --profile cpu [--readme]` and `--changes-since DIR` call, equal the committed files.

The one line that by design differs is REPORT.md's third, "Generated <time> by `genrobust report` at commit
`<commit>`" (GENERATED): its time and commit are those of the rendering, so the test puts the committed ones back
into the Overview before comparing, and asserts that this line is the only one that differed. A "-dirty" commit of
the tree the test runs in therefore neither fails nor passes it; the committed line itself must name a clean commit,
the one verdicts.json was judged at (the report writes both). Everything else a rendering names that depends on when
it ran (the rule's commit in REPORT.md's findings and CHANGES.md) comes from the committed verdicts.json, so it is
compared byte for byte. verdicts.json's own content is recomputed from the metrics files by
tests/test_results_cpu.py::test_every_stored_verdict_is_recomputed_from_the_committed_files; here,
``write_verdicts`` (what `genrobust report` writes first) gives it again but for its provenance.

CHANGES.md compares results/cpu with the copy before its latest regeneration (PREVIOUS, read from git history).
Negative controls: one stored number changed in a copy changes each rendering that shows it."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from genrobust.reporting.changes import CHANGES_NAME, write_changes
from genrobust.reporting.metrics_files import METRICS_FILES, VERDICTS_NAME, read_verdicts, write_verdicts
from genrobust.reporting.readme import update_readme
from genrobust.reporting.report import REPORT_NAME, build, render_markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "cpu"
# The results/cpu that CHANGES.md compares against: the copy before d9ad575 ("Tab. 2 re-judged ...; CHANGES.md
# against the previous results/cpu"). Whoever renders CHANGES.md against another copy names it here.
PREVIOUS = "d9ad575^"
# REPORT.md's line that carries the time and commit of its generation (genrobust.reporting.report.render_markdown)
GENERATED = re.compile(r"Generated (?P<created>\S+) by `genrobust report` at commit `(?P<commit>[^`]+)`\.")
CLEAN_COMMIT = re.compile(r"[0-9a-f]{40}")


def _copy(dst: Path) -> Path:
    """results/cpu without what no rendering reads (notebooks, screenshots, released models)."""
    shutil.copytree(RESULTS, dst, ignore=shutil.ignore_patterns("*.ipynb", "screenshots", "models"))
    return dst


def _previous(dst: Path) -> Path:
    """PREVIOUS's results/cpu metrics files and verdicts.json (what claim_verdicts reads), from git history."""
    dst.mkdir(parents=True)
    for name in [f"{nb}.json" for nb in METRICS_FILES] + [VERDICTS_NAME]:
        got = subprocess.run(["git", "show", f"{PREVIOUS}:results/cpu/{name}"], cwd=ROOT, capture_output=True)
        if got.returncode != 0:
            pytest.fail(f"git show {PREVIOUS}:results/cpu/{name} failed ({got.stderr.decode().strip()}): "
                        "CHANGES.md's older copy is read from git history; run the tests in a full clone")
        (dst / name).write_bytes(got.stdout)
    return dst


def _report(directory: Path) -> str:
    """REPORT.md as `genrobust report` renders it from ``directory``, with the committed REPORT.md's time and commit
    of generation put back (the only line that by design differs: asserted here)."""
    committed = (RESULTS / REPORT_NAME).read_text()
    found = [m for m in map(GENERATED.search, committed.splitlines()) if m]
    assert len(found) == 1, f"REPORT.md has {len(found)} 'Generated ... at commit' lines, expected one"
    ov = build("cpu", directory)
    fresh = render_markdown(ov).splitlines()
    back = render_markdown(dataclasses.replace(ov, created=found[0]["created"], commit=found[0]["commit"]))
    differing = [a for a, b in zip(fresh, back.splitlines()) if a != b]
    assert len(fresh) == len(back.splitlines()) and all(GENERATED.search(line) for line in differing), differing
    return back


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> Path:
    return _previous(tmp_path_factory.mktemp("previous") / "cpu")


def test_report_regenerates_byte_for_byte(tmp_path):
    assert _report(_copy(tmp_path / "cpu")) == (RESULTS / REPORT_NAME).read_text()


def test_the_generated_line_names_the_clean_commit_that_judged_the_verdicts():
    """The committed REPORT.md was rendered at a clean commit, the one its verdicts.json names (one `report` run)."""
    commit = next(m for m in map(GENERATED.search, (RESULTS / REPORT_NAME).read_text().splitlines()) if m)["commit"]
    assert CLEAN_COMMIT.fullmatch(commit), f"REPORT.md generated at {commit!r}, not a clean commit"
    assert commit == json.loads((RESULTS / VERDICTS_NAME).read_text())["provenance"]["git_commit"]


def test_readme_tables_regenerate_byte_for_byte(tmp_path, monkeypatch):
    """`genrobust report --profile cpu --readme`'s writer on a copy of README.md: nothing changes."""
    monkeypatch.setenv("GENROBUST_RESULTS", str(_copy(tmp_path / "results" / "cpu").parent))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    update_readme("cpu", readme)
    assert readme.read_bytes() == (ROOT / "README.md").read_bytes()


def test_changes_regenerate_byte_for_byte(tmp_path, previous):
    """CHANGES.md from PREVIOUS to results/cpu (`genrobust report --profile cpu --changes-since DIR`)."""
    new = _copy(tmp_path / "cpu")
    (new / CHANGES_NAME).unlink()
    write_changes(previous, new)
    assert (new / CHANGES_NAME).read_bytes() == (RESULTS / CHANGES_NAME).read_bytes(), \
        f"CHANGES.md differs from its rendering against {PREVIOUS}: run `genrobust report --profile cpu " \
        "--changes-since DIR` with DIR a copy of that results/cpu, or name the copy it compares against in PREVIOUS"


def test_verdicts_regenerate_but_for_their_provenance(tmp_path):
    """What `genrobust report` writes first: verdicts.json from the metrics files, equal to the committed one (read
    in today's form: 'upgraded_from' marks an older one) in everything but the provenance of its writing."""
    copy = _copy(tmp_path / "cpu")
    write_verdicts(copy)
    fresh, committed = read_verdicts(copy), read_verdicts(RESULTS)
    assert fresh["provenance"]["git_commit"] and committed["provenance"]["git_commit"]
    assert {k: v for k, v in fresh.items() if k != "provenance"} == \
        {k: v for k, v in committed.items() if k not in ("provenance", "upgraded_from")}


def _nudge_calibration(results: Path) -> None:
    path = results / "02_calibration.json"
    rec = json.loads(path.read_text())
    rec["accuracy"]["test_after"] += 0.1
    path.write_text(json.dumps(rec))


def _nudge_verdict(results: Path) -> None:
    path = results / VERDICTS_NAME
    rec = json.loads(path.read_text())
    rec["notebooks"]["03_accuracy"]["verdicts"][0]["effect"] += 0.1
    path.write_text(json.dumps(rec))


@pytest.mark.parametrize("nudge, differ", [(_nudge_calibration, {"report", "readme"}),
                                           (_nudge_verdict, {"report", "readme", "changes"})])
def test_one_changed_number_changes_the_renderings(tmp_path, monkeypatch, previous, nudge, differ):
    """Negative control: a copy with one stored number changed renders differently wherever that number shows
    (and CHANGES.md, which shows verdicts only, is unchanged by a calibration accuracy)."""
    copy = _copy(tmp_path / "results" / "cpu")
    nudge(copy)
    monkeypatch.setenv("GENROBUST_RESULTS", str(copy.parent))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    update_readme("cpu", readme)
    write_changes(previous, copy)
    found = {"report": _report(copy) != (RESULTS / REPORT_NAME).read_text(),
             "readme": readme.read_bytes() != (ROOT / "README.md").read_bytes(),
             "changes": (copy / CHANGES_NAME).read_bytes() != (RESULTS / CHANGES_NAME).read_bytes()}
    assert {k for k, v in found.items() if v} == differ
