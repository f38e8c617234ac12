"""The report (notebook 06, REPORT.md, `genrobust report`) from the metrics files alone: assembles and writes it.

The reproduction report (notebook 06, ``results/<profile>/REPORT.md``, ``genrobust report``): every number the
paper reports beside ours, built ONLY from the metrics JSON files notebooks 01-05 write into ``results/<profile>/``
(no training, no attacks: it runs in seconds and can be regenerated at any time). This module assembles and writes
it; its parts each have their own module: the sections per paper table (``sections``), what differs from the
paper's setting (``setting``), the files' status, provenance and agreement (``consistency``), the verdicts' one
reader (``verdicts``) and the findings (``findings``).

    ov = build("cpu")              # reads results/cpu/0[1-5]_*.json
    ov.sections["tab1"].table      # a DataFrame: paper vs ours
    write_report(ov)               # results/cpu/REPORT.md (atomic)
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.config import get_profile
from ..store.io import ResultsError, write_text
from ..store.paths import results_dir
from ..store.provenance import git_commit
from .changes import CHANGES_NAME
from .consistency import consistency_notes, provenance_table, status_table
from .findings import findings_markdown, scale_words
from .metrics_files import Source, load_sources
from .sections import (Section, claims_section, fig1_section, paired_section, tab1_section, tab2_section,
                       tab3_section, tab4_section)
from .setting import EXECUTION_ONLY, settings_table

# Sections whose figures the notebook embeds (Fig. 1, the report's one figure); the others are linked by relative
# path (notebooks 02-05 already embed them, and results/<profile>/figures/ holds the PNGs).
EMBEDDED_FIGURES = ("fig1",)
REPORT_NAME = "REPORT.md"


@dataclass
class Overview:
    profile: str
    directory: Path
    sources: dict[str, Source]
    sections: dict[str, Section]
    created: str
    commit: str

    @property
    def status(self) -> pd.DataFrame:
        return status_table(self.sources)

    @property
    def provenance(self) -> pd.DataFrame:
        return provenance_table(self.sources)

    @property
    def settings(self) -> pd.DataFrame:
        return settings_table(self.sources)

    @property
    def consistency(self) -> list[str]:
        return consistency_notes(self.sources)

    def show(self, key: str) -> None:
        """Display one section in a notebook: notes, table, figures."""
        from IPython.display import Image, Markdown, display  # only inside a notebook
        s = self.sections[key]
        display(s.table)
        if s.settings:
            display(Markdown(s.settings_markdown))
        if s.notes:
            display(Markdown("\n\n".join(n for n in s.notes if n)))
        for caption, path in s.figures:
            rel = _rel(path, self.directory)
            if key in EMBEDDED_FIGURES:
                display(Markdown(f"*{caption}* (`{rel}`)"))
                display(Image(filename=str(path)))
            else:  # linked relative to the executed notebook in results/<profile>/: no third copy of each PNG
                display(Markdown(f"*{caption}* (`{rel}`)\n\n![{caption}]({rel})"))

    def to_markdown(self) -> str:
        return render_markdown(self)


def build(profile: str, directory: str | os.PathLike | None = None, *, replot: bool = True) -> Overview:
    """The report of ``profile`` from the metrics files in ``directory`` (default results/<profile>/)."""
    get_profile(profile)  # an unknown profile fails with the config's one-line error
    directory = Path(directory) if directory is not None else results_dir(profile)
    sources = load_sources(directory)
    sections = [tab1_section(sources), fig1_section(sources, directory, replot=replot), paired_section(sources),
                tab2_section(sources, directory), tab3_section(sources, directory), tab4_section(sources),
                claims_section(sources, directory)]
    return Overview(profile=profile, directory=directory, sources=sources, sections={s.key: s for s in sections},
                    created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), commit=git_commit())


def _rel(path: Path, directory: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(directory).resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(Path(path).resolve(), Path(directory).resolve())).as_posix()


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = f"{v:g}" if isinstance(v, float) else str(v)
    return s.replace("|", "\\|").replace("\n", "<br>")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of ``df`` (its index too when named)."""
    if any(n is not None for n in df.index.names):
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(ov: Overview) -> str:
    prof = get_profile(ov.profile)
    out = [f"# Reproduction report — profile `{ov.profile}`", "",
           f"*Generative Robust Classification* (Yin): the paper's numbers (genrobust.core.paper) beside ours, read from "
           f"the metrics files in this directory. Generated {ov.created} by `genrobust report` at commit "
           f"`{ov.commit}`. Differences are ours minus the paper's; 'setting: ours vs paper' lists every recorded "
           f"setting that differs from the `paper` profile (genrobust.core.config).", "",
           f"**Profile `{ov.profile}`:** {prof.description}", ""]
    if (ov.directory / CHANGES_NAME).exists():
        out += [f"Which verdicts changed against the previous results of this profile, and why: [{CHANGES_NAME}]"
                f"({CHANGES_NAME}).", ""]
    out += ["## Status", "", markdown_table(ov.status), ""]
    try:
        out += ["## Findings, long form", "", f"At this scale ({scale_words(ov.directory)}). README holds them as "
                "one compact table.", "", findings_markdown(ov.directory), ""]
    except ResultsError as err:  # 03 or 04 not run yet: nothing to find
        out += ["## Findings, long form", "", f"Not available: {err}", ""]
    if ov.consistency:
        out += ["**Consistency:**", ""] + [f"- {n}" for n in ov.consistency] + [""]
    for s in ov.sections.values():
        out += [f"## {s.title}", "", markdown_table(s.table), ""]
        if s.settings:
            out += [s.settings_markdown, ""]
        out += [n for note in s.notes if note for n in (note, "")]
        for caption, path in s.figures:
            out += [f"![{caption}]({_rel(path, ov.directory)})", ""]
    settings = ov.settings
    out += ["## Setting: ours vs the paper profile", "",
            "Every recorded config value that differs from the `paper` profile, per results file (execution-only "
            f"keys such as {', '.join(sorted(EXECUTION_ONLY)[:4])} left out).", "",
            markdown_table(settings) if len(settings) else "No recorded setting differs (or nothing has run yet).", ""]
    out += ["## Provenance", "", "Each row's `source` names its results file and config hash (sha256 of the config "
            "recorded in its provenance, first 12 hex digits); the full provenance record (config, packages, device) "
            "is in the file.", "", markdown_table(ov.provenance), ""]
    return "\n".join(out)


def write_report(ov: Overview | str, path: str | os.PathLike | None = None) -> Path:
    """Write the report as markdown to ``path`` (default results/<profile>/REPORT.md), atomically."""
    if isinstance(ov, str):
        ov = build(ov)
    path = Path(path) if path is not None else ov.directory / REPORT_NAME
    return write_text(path, render_markdown(ov))
