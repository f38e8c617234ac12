"""`evaluate --model`'s table (clean, paper's attack, worst case, ours) as text, markdown, LaTeX.

`genrobust evaluate --model`'s table, as text for the terminal or as markdown / LaTeX to paste into a paper: one
clean row, the paper's attack at every eps on the n_test images, the per-example worst case over every attack at each
eps where more than one ran (on n_strong), and each of our classifiers on the same images under the attacks both
faced, with yours minus ours and its exact McNemar p. Rendering only: every number comes from the record
(genrobust.pipeline.own_model.evaluate_model).
"""
from __future__ import annotations

import pandas as pd

from ..core.fmt import ci_pct, pct
from ..core.stats import wilson_interval
from ..core.registry import ATTACK_LABELS
from ..measure.record import EvalRecord
from .report import markdown_table

FORMATS = ("text", "markdown", "latex")
COLUMNS = ("model", "eps", "attack", "n", "accuracy %", "95% CI %", "yours - ours")


def _attacks(names) -> str:
    return " + ".join(ATTACK_LABELS.get(a, a) for a in names)


def _steps(run) -> str:
    s, r = run.settings.get("steps"), run.settings.get("restarts", 1)
    return f"{s} steps" + (f" x {r} restarts" if r and r > 1 else "")


def own_model_table(record: dict) -> pd.DataFrame:
    """The rows of the table (see the module docstring) from an evaluate_model record."""
    rec = EvalRecord.from_dict(record["yours"])
    clean = record["yours"]["clean"]
    rows = [{"model": "yours", "eps": 0.0, "attack": "clean", "n": rec.n, "accuracy %": pct(clean["accuracy"]),
             "95% CI %": ci_pct(clean["ci95"]), "yours - ours": None}]
    for run in rec.paper_runs():
        k = int(run.flags.sum())
        rows.append({"model": "yours", "eps": run.eps,
                     "attack": f"{ATTACK_LABELS[run.attack]}, {_steps(run)} (the paper's attack)",
                     "n": run.n, "accuracy %": pct(k / run.n), "95% CI %": ci_pct(wilson_interval(k, run.n)),
                     "yours - ours": None})
    for e in rec.eps_values():
        if e > 0 and len(rec.attacks_at(e)) > 1:
            w = rec.worst(e)
            rows.append({"model": "yours", "eps": e, "attack": f"worst case over {_attacks(w.attacks)}", "n": w.n,
                         "accuracy %": pct(w.accuracy),
                         "95% CI %": ci_pct(wilson_interval(int(w.flags.sum()), w.n)), "yours - ours": None})
    for t in record["comparison"]:
        k = round(t["acc_second"] * t["n"])
        what = "clean" if t["eps"] == 0 else f"worst case over {_attacks(t['attacks'])}"
        rows.append({"model": f"ours: {t.get('ours', t['comparison'].split()[-1])}", "eps": t["eps"],
                     "attack": what, "n": t["n"], "accuracy %": pct(t["acc_second"]),
                     "95% CI %": ci_pct(wilson_interval(k, t["n"])),
                     "yours - ours": f"{100 * t['diff']:+.1f} points (McNemar p {t['p']:.2g})"})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def caption(record: dict) -> str:
    """One line saying what was evaluated, under which budget, on which data."""
    m, b = record["model"], record["budget"]
    budget = f"budget {b['name']}" if b["name"] else b["doc"]
    data = record["provenance"].get("data_source") or {}
    return (f"{m['name']} ({m['class']}, {m['parameters'] / 1e6:.2f}M parameters, weights {m['weights_digest']}); "
            f"{budget}; {record['eval']['norm'].upper()} eps in [0, 1] pixel units; "
            f"{data.get('name', 'CIFAR-10')} test images; 95% Wilson intervals")


# LaTeX's special characters, escaped one character at a time (so an escape is never escaped again)
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_cell(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    s = f"{v:g}" if isinstance(v, float) else str(v)
    return "".join(_LATEX.get(c, c) for c in s)


def latex_table(df: pd.DataFrame, caption_text: str = "") -> str:
    """A booktabs tabular of ``df`` (\\usepackage{booktabs}), special characters escaped."""
    cols = [str(c) for c in df.columns]
    lines = ([f"% {caption_text}"] if caption_text else []) + [
        r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule",
        " & ".join(_latex_cell(c) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def render(record: dict, fmt: str = "text") -> str:
    """The table of ``record`` in ``fmt`` (one of :data:`FORMATS`), its caption above it (a comment in LaTeX)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    df, cap = own_model_table(record), caption(record)
    if fmt == "markdown":
        return cap + "\n\n" + markdown_table(df)
    if fmt == "latex":
        return latex_table(df, cap)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 80):
        return cap + "\n" + df.to_string(index=False, na_rep="")
