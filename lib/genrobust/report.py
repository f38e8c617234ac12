"""Tables for notebooks (pandas DataFrames, paper value beside ours) and the metrics JSON each notebook writes.

Every metrics file lands in ``results/<profile>/`` with a provenance record (config, git commit, package versions,
seed, data source + sha256, device, wall time).
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from . import paper
from .data import CLASSES
from .results import provenance, results_dir, write_json


def config_table(cfg, sections=("model", "train")) -> pd.DataFrame:
    rows = []
    for sec in sections:
        for k, v in dataclasses.asdict(getattr(cfg, sec)).items():
            rows.append({"setting": f"{sec}.{k}", "value": str(v)})
    return pd.DataFrame(rows).set_index("setting")


def _pct(x):
    return None if x is None else round(100 * x, 2)


def training_table(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        last = r["metrics"][-1] if r["metrics"] else {}
        best = next((m for m in r["metrics"] if m["epoch"] == r["best_epoch"]), last)
        out.append({
            "k": r["k"], "class": CLASSES[r["k"]], "epochs": r["epochs"], "selected epoch": r["best_epoch"],
            **{k.replace("_", " "): round(v, 4) for k, v in best.items() if k.endswith("auroc")},
            "final train loss": round(last.get("train_loss", float("nan")), 4),
            "images/s": last.get("images_per_s"),
            "wall time (min)": round(r["provenance"]["wall_time_s"] / 60, 2),
        })
    return pd.DataFrame(out).set_index("k")


def softmax_table(res: dict, cfg) -> pd.DataFrame:
    best = next((m for m in res["metrics"] if m["epoch"] == res["best_epoch"]), res["metrics"][-1])
    row = {"model": f"{cfg.softmax.model} (width {cfg.softmax.width})", "parameters": res["parameters"],
           "epochs": res["epochs"], "selected epoch": res["best_epoch"],
           **{k.replace("_", " "): round(v, 4) for k, v in best.items() if k.endswith("acc") and "train" not in k},
           "wall time (min)": round(res["provenance"]["wall_time_s"] / 60, 2)}
    return pd.DataFrame([row])


def write_training_metrics(cfg, rows, soft, data) -> str:
    total = sum(r["provenance"]["wall_time_s"] or 0 for r in rows) + (soft["provenance"]["wall_time_s"] if soft else 0)
    rec = {
        "notebook": "01_training",
        "binary": [{k: r[k] for k in ("k", "best_epoch", "best_metric", "select_key", "epochs", "parameters",
                                      "checkpoint", "metrics")} | {"wall_time_s": r["provenance"]["wall_time_s"]}
                   for r in rows],
        "binary_parameters_total": sum(r["parameters"] for r in rows),
        "softmax": None if soft is None else {k: soft[k] for k in ("best_epoch", "best_metric", "select_key",
                                                                   "epochs", "parameters", "checkpoint", "metrics")}
        | {"wall_time_s": soft["provenance"]["wall_time_s"]},
        "training_wall_time_s": round(total, 1),
        "provenance": provenance(cfg, data_source=data.source, seed=cfg.train.seed, wall_time_s=round(total, 1)),
    }
    return str(write_json(results_dir(cfg.name) / "01_training.json", rec))


def tab3(cal: dict) -> pd.DataFrame:
    a = cal["accuracy"]
    rows = [
        {"classifier": "generative (before calibration)", "paper train %": _pct(paper.TAB3["before"]["train"]),
         "ours train %": _pct(a["train_before"]), "paper test %": _pct(paper.TAB3["before"]["test"]),
         "ours test %": _pct(a["test_before"])},
        {"classifier": "generative (after calibration)", "paper train %": _pct(paper.TAB3["after"]["train"]),
         "ours train %": _pct(a["train_after"]), "paper test %": _pct(paper.TAB3["after"]["test"]),
         "ours test %": _pct(a["test_after"])},
    ]
    return pd.DataFrame(rows).set_index("classifier")


def tab4(cal: dict) -> pd.DataFrame:
    return pd.DataFrame({"class": [f"c_{k + 1} ({CLASSES[k]})" for k in range(len(cal["c"]))],
                         "paper": list(paper.TAB4["c"]),
                         "ours": [round(v, 4) for v in cal["c"]]}).set_index("class").T


def write_calibration_metrics(cfg, cal: dict) -> str:
    rec = {k: v for k, v in cal.items() if not k.startswith("_")}
    rec["notebook"] = "02_calibration"
    rec["paper"] = {"tab3": paper.TAB3, "tab4": list(paper.TAB4["c"])}
    return str(write_json(results_dir(cfg.name) / "02_calibration.json", rec))
