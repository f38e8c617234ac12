"""README and docs/ as a user meets them: every relative link resolves (file and #anchor), README stays short,
the version is written once and agrees everywhere, CITATION.cff is valid CFF, LICENSE exists."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

import genrobust
from genrobust.cli import build_parser
from genrobust.core.version import __version__
from genrobust.reporting.readme import F_END, F_START, findings_table, readme_block, results_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(md: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in md.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", m.group(1).strip().lower())))
    return out


def broken_links(path: Path) -> list[str]:
    """Relative links of one markdown file that name a missing file or a missing heading anchor."""
    text, bad = path.read_text(), []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{path.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{path.name}: {target} (no such heading)")
    return bad


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_broken_link_is_caught(tmp_path):
    """Negative control: a missing file and a missing anchor are both reported."""
    (tmp_path / "a.md").write_text("# Title here\n[ok](#title-here) [gone](b.md) [bad](#nowhere) [web](https://x.y)\n")
    assert broken_links(tmp_path / "a.md") == ["a.md: b.md (no such file)", "a.md: #nowhere (no such heading)"]


def test_readme_is_short_and_links_the_map():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    assert "docs/layout.md" in text and "make test" in text


def test_version_is_written_once_and_agrees():
    assert genrobust.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == __version__
    first_entry = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert first_entry == __version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "genrobust.core.version.__version__" in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)  # no second copy


def test_cli_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"genrobust {__version__}"


def test_citation_and_license():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    for key in ("message", "title", "authors", "type"):
        assert cff[key], key
    assert cff["preferred-citation"]["title"] == "Generative Robust Classification"
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_readme_results_table_is_generated_from_the_committed_files(tmp_path):
    block = readme_block((ROOT / "README.md").read_text())
    assert block == results_table("cpu", ROOT / "results" / "cpu"), \
        "README's results table differs from results/cpu: run `genrobust report --profile cpu --readme`"
    # negative control: one number changed in a copy of the files changes the table
    for name in ("02_calibration", "03_accuracy", "04_generation_fid"):
        shutil.copy(ROOT / "results" / "cpu" / f"{name}.json", tmp_path)
    acc = json.loads((tmp_path / "03_accuracy.json").read_text())
    acc["tab1"][0]["ours clean %"] += 1.0
    (tmp_path / "03_accuracy.json").write_text(json.dumps(acc))
    assert results_table("cpu", tmp_path) != block


def test_readme_findings_are_the_stored_verdicts_and_fit_on_one_screen():
    text = (ROOT / "README.md").read_text()
    block = readme_block(text, F_START, F_END)
    assert block == findings_table("cpu", ROOT / "results" / "cpu"), \
        "README's findings differ from results/cpu: run `genrobust report --profile cpu --readme`"
    assert len(block.splitlines()) <= 20 and "at this scale" in block.lower()
    assert "at this scale (cpu profile, one training run per arm)" in text and "do not show" in text
