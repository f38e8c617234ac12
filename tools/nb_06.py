"""Notebook 06: the reproduction report, read from the metrics files of notebooks 01-05 (genrobust.overview)."""
from make_notebooks import code, md

NAME = "06_report"


def _section(key: str, heading: str, text: str):
    return [md(f"## {heading}\n{text}"), code(f'ov.show("{key}")')]


CELLS = [
    md("""
# 06 — Report: the paper's numbers beside ours
Reads **only** the metrics files notebooks 01-05 wrote into `results/<profile>/` (no training, no attacks; seconds).
Every row gives the paper's value (`genrobust.paper`), ours, the difference (ours minus paper) and what differs in
the setting — derived from the config recorded in the results file against the `paper` profile, and from the
recorded data source. A notebook not yet run for this profile shows "not run yet". The same report is written as
`results/<profile>/REPORT.md` (also: `genrobust report --profile <profile>`).
"""),
    code("""
profile = "smoke"        # smoke | cpu | paper
""", tags=["parameters"]),
    code("""
%matplotlib inline
import pandas as pd
from IPython.display import Markdown, display
from genrobust import overview

pd.set_option("display.max_colwidth", None)
ov = overview.build(profile)
display(Markdown(f"**Profile `{ov.profile}`**, results in `{ov.directory}`; report code at commit `{ov.commit}`."))
ov.status
"""),
    code("""
display(Markdown("\\n".join(f"- {n}" for n in ov.consistency) or "All results files agree on the classifiers' "
                 "settings and come from one commit."))
"""),
    *_section("tab1", "Tab. 1 — standard and robust accuracy (L2)",
              "The paper's attack, and the per-example worst case over every attack run at that eps (notebook 03)."),
    *_section("fig1", "Fig. 1 — accuracy vs test eps", "The paper gives a plot; its only numbers are Tab. 1's."),
    *_section("tab2", "Tab. 2 — FID of generated samples and counterfactuals",
              "FID at small N is biased upward: see the 'comparable with' column (notebook 04)."),
    *_section("tab3", "Tab. 3 — accuracy before and after calibration", "Notebook 02 (with Fig. 4)."),
    *_section("tab4", "Tab. 4 — calibration constants c_k", "Notebook 02."),
    *_section("claims", "Figs. 5-8 — the ablation claims and our verdicts", "Notebook 05."),
    md("## Setting: ours vs the paper profile (every recorded value that differs, per results file)"),
    code("ov.settings"),
    md("## Provenance: where every number comes from"),
    code("ov.provenance"),
    code("""
path = overview.write_report(ov)
print("report written to", path)
"""),
]
