"""The metrics files of results/<profile>/: one JSON per notebook, its writer and its reader in this one module.

Every file carries a provenance record (config, git commit, package versions, seed, data source + sha256, device,
wall time) and is written atomically. :func:`load_sources` reads them back for the report; a file that does not
exist yet (its notebook has not run for this profile) or cannot be read is flagged, never raised.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core import paper
from ..core.config import config_hash, from_dict
from ..core.upgrade import SCHEMA_VERSION, VERDICTS_SCHEMA, schema_problem, upgrade_metrics, upgrade_verdicts
from ..measure.ablate import base_profile, evaluate_claims, record_for_json, regime_note
from ..measure.accuracy import paired_tests
from ..measure.claims import ONE_RUN, ClaimError, accuracy_verdicts, generation_verdicts, scale_label
from ..measure.record import records as eval_records
from ..store.checkpoints import weights_digest
from ..store.io import ResultsError, read_json, sha256_file, write_json
from ..store.paths import results_dir
from ..store.provenance import provenance
from .tables import tab1

# The metrics files the report reads: notebook name -> what it holds. The file is results/<profile>/<notebook>.json.
METRICS_FILES = {
    "01_training": "binary models d_k and the softmax baseline",
    "02_calibration": "Tab. 3, Tab. 4 (calibration constants c_k)",
    "03_accuracy": "Tab. 1, Fig. 1 (clean and robust accuracy)",
    "04_generation_fid": "Tab. 2 (FID of samples and counterfactuals)",
    "05_ablations": "Figs. 5-8 (ablation claims)",
}
NOT_RUN = "not run yet"


# ---------------------------------------------------------------------------------------------------------------
# Writers (one per notebook)
# The layout of the metrics files is schema SCHEMA_VERSION; what each older version differs in, and how it is read
# in today's form, is genrobust.core.upgrade.CHANGES. A reader refuses a version it does not know.


def _write(cfg, notebook: str, rec: dict) -> str:
    return str(write_json(results_dir(cfg.name) / f"{notebook}.json", {"schema_version": SCHEMA_VERSION, **rec}))


def read_metrics(path) -> dict:
    """A metrics file in today's form (genrobust.core.upgrade), refused with one line when its schema_version is
    unknown to this code."""
    rec = read_json(path)
    if schema_problem(rec):
        raise ResultsError(f"{path}: {schema_problem(rec)}")
    return upgrade_metrics(rec, Path(path).name)


def _checkpoint_digests(checkpoints: dict | None) -> dict:
    return {k: {"path": str(p), "weights_sha256": weights_digest(p)} for k, p in (checkpoints or {}).items()}


def write_training_metrics(cfg, rows, soft, data) -> str:
    total = sum(r["provenance"]["wall_time_s"] or 0 for r in rows) + (soft["provenance"]["wall_time_s"] if soft else 0)
    rec = {
        "notebook": "01_training",
        "binary": [{k: r[k] for k in ("k", "best_epoch", "best_metric", "select_key", "epochs", "parameters",
                                      "checkpoint", "metrics")} | {"wall_time_s": r["provenance"]["wall_time_s"],
                                                                   "weights_sha256": weights_digest(r["checkpoint"])}
                   for r in rows],
        "binary_parameters_total": sum(r["parameters"] for r in rows),
        "softmax": None if soft is None else {k: soft[k] for k in ("best_epoch", "best_metric", "select_key",
                                                                   "epochs", "parameters", "checkpoint", "metrics")}
        | {"wall_time_s": soft["provenance"]["wall_time_s"], "weights_sha256": weights_digest(soft["checkpoint"])},
        # the jobs run side by side (profile.workers), so their summed time is compute, not the wall time
        "training_job_time_s": round(total, 1),
        "provenance": provenance(cfg, data_source=data.source, seed=cfg.train.seed, wall_time_s=None,
                                 job_time_s=round(total, 1)),
    }
    return _write(cfg, "01_training", rec)


def write_calibration_metrics(cfg, cal: dict) -> str:
    rec = {k: v for k, v in cal.items() if not k.startswith("_")}
    rec["notebook"] = "02_calibration"
    rec["paper"] = {"tab3": paper.TAB3, "tab4": list(paper.TAB4["c"])}
    return _write(cfg, "02_calibration", rec)


def write_accuracy_metrics(cfg, records: dict, checks: list[dict], data, wall_time_s: float,
                           checkpoints: dict | None = None) -> str:
    """results/<profile>/03_accuracy.json: every run's per-example flags and settings, the worst cases, Tab. 1
    rows, the masking checks, the paper's Tab. 1 and a provenance record (written atomically). ``checkpoints``:
    {kind: path} of the evaluated classifiers, recorded with their weights digests."""
    rec = {
        "notebook": "03_accuracy",
        "eval": dataclasses.asdict(cfg.eval),
        "classifiers": records,
        "worst_case": {k: [w.to_dict() for w in r.worst_cases()] for k, r in eval_records(records).items()},
        "tab1": tab1(records).reset_index().to_dict(orient="records"),
        "paired": paired_tests(records),
        # the verdicts on Tab. 1, Fig. 1 and the protocol gap (genrobust.measure.claims): stored, rendered elsewhere
        "verdicts": [v.to_dict() for v in accuracy_verdicts(eval_records(records), gap_tolerance=cfg.eval.aa_gap,
                                                            scale=scale_label(cfg.name, ONE_RUN))],
        "checks": checks,
        "paper": {"tab1": paper.TAB1},
        "checkpoints": _checkpoint_digests(checkpoints),
        "provenance": provenance(cfg, data_source=data.source, seed=cfg.eval.seed, wall_time_s=round(wall_time_s, 1),
                                 split=data.split),
    }
    return _write(cfg, "03_accuracy", rec)


def write_ablation_metrics(cfg, records: list[dict], table, claims: dict, *, estimate: dict | None = None,
                           checks: list[str] | None = None, wall_time_s: float | None = None) -> str:
    """results/<profile>/05_ablations.json: per point AUROC over the test eps grid with bootstrap CIs, each claim's
    comparisons and verdict, the sanity-check findings, the runtime estimate beside the measured wall time."""
    rec = {
        "notebook": "05_ablations",
        "class": cfg.ablation.cls,
        "points": record_for_json(records, table),
        "claims": claims,
        "sanity_checks": checks or [],
        "regime": regime_note(cfg),
        "ablation_base": {"data": dataclasses.asdict(base_profile(cfg).data),
                          "model": dataclasses.asdict(base_profile(cfg).model),
                          "train": dataclasses.asdict(base_profile(cfg).train)},
        "runtime": None if estimate is None else {
            "estimated_wall_s": estimate["wall_s"], "estimated_worker_s": estimate["worker_s"],
            "assumptions": estimate["assumptions"], "measured_wall_s": wall_time_s,
            # train + score seconds of every distinct run (measured when it ran, also if reused now)
            "measured_job_s": round(sum(r["train_wall_time_s"] + r["eval_wall_time_s"]
                                        for r in {r["run"]: r for r in records}.values()), 1),
            # per-job seconds from the cost model above (estimates, not timings: the measured ones are above)
            "estimated_jobs": estimate["jobs"].to_dict(orient="records")},
        "paper": {k: list(v) for k, v in paper.ABLATION_CLAIMS.items()},
        "provenance": provenance(cfg, data_source=records[0]["data_source"] if records else None,
                                 seed=cfg.eval.seed, wall_time_s=wall_time_s, training_seeds=list(cfg.ablation.seeds)),
    }
    return _write(cfg, "05_ablations", rec)


def write_generation_metrics(cfg, rec: dict, data, *, wall_time_s: float, checkpoints: dict | None = None) -> str:
    """results/<profile>/04_generation_fid.json: the Tab. 2 record, the paper's Tab. 2 and provenance.
    ``checkpoints``: {kind: path} of the classifiers that generated, recorded with their weights digests."""
    out = dict(rec)
    out["checkpoints"] = _checkpoint_digests(checkpoints)
    out["verdicts"] = [v.to_dict() for v in generation_verdicts(rec.get("paired", []), scale_label(cfg.name, ONE_RUN),
                                                                chained=bool(rec.get("chained")))]
    out["paper"] = {"source": paper.TAB2["source"],
                    "cells": [{"steps": s, "step_size": a, "classifier": clf, "kind": kind, "fid": v}
                              for (s, a), per in ((k, v) for k, v in paper.TAB2.items() if k != "source")
                              for clf, kinds in per.items() for kind, v in kinds.items()]}
    out["provenance"] = provenance(cfg, data_source=data.source, seed=cfg.gen.seed, wall_time_s=round(wall_time_s, 1))
    return _write(cfg, "04_generation_fid", out)


# ---------------------------------------------------------------------------------------------------------------
# Reader
@dataclass
class Source:
    """One metrics file of results/<profile>/: its record (None when missing or unreadable) and its status."""
    notebook: str
    path: Path
    record: dict | None
    status: str  # "ok", NOT_RUN, or "unreadable: ..."

    @property
    def ok(self) -> bool:
        return self.record is not None

    @property
    def provenance(self) -> dict:
        return (self.record or {}).get("provenance") or {}

    @property
    def config(self) -> dict | None:
        return self.provenance.get("config")

    @property
    def config_hash(self) -> str | None:
        return config_hash(self.config) if self.config else None

    @property
    def commit(self) -> str:
        return self.provenance.get("git_commit") or "unknown"

    @property
    def data_source(self) -> dict | None:
        return self.provenance.get("data_source")

    def cite(self) -> str:
        """'03_accuracy.json (config 1a2b3c4d5e6f)': how a row names where its number comes from."""
        if not self.ok:
            return f"{self.path.name} ({self.status})"
        return f"{self.path.name} (config {self.config_hash or 'not recorded'})"


def load_sources(directory: str | os.PathLike) -> dict[str, Source]:
    """Every metrics file of METRICS_FILES in ``directory``; missing or unreadable ones are flagged, not raised."""
    directory = Path(directory)
    out = {}
    for nb in METRICS_FILES:
        path = directory / f"{nb}.json"
        record, status = None, NOT_RUN
        if path.is_file():
            try:
                record = json.loads(path.read_text())
                status = "ok"
                if not isinstance(record, dict):
                    record, status = None, "unreadable: not a JSON object"
                elif record.get("notebook", nb) != nb:
                    record, status = None, f"unreadable: written by {record.get('notebook')!r}, not {nb!r}"
                elif schema_problem(record):
                    record, status = None, f"unreadable: {schema_problem(record)}"
                else:
                    record = upgrade_metrics(record, path.name)  # today's form, whatever its schema_version
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
                status = f"unreadable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}"
        out[nb] = Source(nb, path, record, status)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Verdicts re-derived from the committed evidence alone
VERDICTS_NAME = "verdicts.json"
VERDICT_NOTEBOOKS = ("03_accuracy", "04_generation_fid", "05_ablations")
# what each notebook's verdicts are computed from, inside its metrics file
EVIDENCE = {"03_accuracy": "per-example flags of every attack run ('classifiers'), eval.aa_gap",
            "04_generation_fid": "half-subsampling replicates of each FID difference ('paired')",
            "05_ablations": "per-seed AUROCs of every sweep point ('points'), the ablation config"}


def judge_notebook(notebook: str, record: dict):
    """Today's rule (genrobust.measure.claims) on what one metrics file stores (EVIDENCE), nothing else: 03 and 04
    a list of Verdicts, 05 evaluate_claims' claims. ClaimError or KeyError where the file lacks that evidence."""
    cfg = (record.get("provenance") or {}).get("config") or {}
    if notebook == "03_accuracy":
        return accuracy_verdicts(eval_records(record["classifiers"]), gap_tolerance=cfg["eval"]["aa_gap"],
                                 scale=scale_label(cfg["name"], ONE_RUN))
    if notebook == "04_generation_fid":
        return generation_verdicts(record.get("paired", []), scale_label(cfg["name"], ONE_RUN),
                                   chained=bool(record.get("chained")))
    return evaluate_claims(from_dict(cfg), record["points"])


def lacks_evidence(src: Source, err: Exception) -> str:
    """Why :func:`judge_notebook` could not judge ``src``: the evidence it reads, and what was missing."""
    return f"{src.path.name} lacks the evidence today's rule reads ({EVIDENCE[src.notebook]}): {err}"


def judge_evidence(directory: str | os.PathLike) -> dict:
    """Every verdict of 03-05 recomputed by :func:`judge_notebook` from the metrics files in ``directory``:
    {notebook: {"sha256", "commit", "verdicts"} (05: "claims", as evaluate_claims gives them) or {"sha256",
    "commit", "not_judged": reason}} (a missing file: not_judged)."""
    sources = load_sources(directory)
    out = {}
    for nb in VERDICT_NOTEBOOKS:
        src = sources[nb]
        if not src.ok:
            out[nb] = {"not_judged": f"{src.path.name}: {src.status}"}
            continue
        entry = {"sha256": sha256_file(src.path).hexdigest(), "commit": src.commit}
        try:
            judged = judge_notebook(nb, src.record)
            if nb == "05_ablations":
                entry["claims"] = judged
            else:
                entry["verdicts"] = [v.to_dict() for v in judged]
        except (ClaimError, KeyError) as err:
            entry["not_judged"] = lacks_evidence(src, err)
        out[nb] = entry
    return out


def write_verdicts(directory: str | os.PathLike) -> Path:
    """``directory``/verdicts.json (atomic): :func:`judge_evidence` with a provenance record naming the commit that
    judged. The report, README and CHANGES.md render it; tests recompute it from the metrics files."""
    directory = Path(directory)
    return write_json(directory / VERDICTS_NAME, {"schema_version": VERDICTS_SCHEMA,
                                                  "notebooks": judge_evidence(directory), "evidence": EVIDENCE,
                                                  "provenance": provenance()})


def read_verdicts(directory: str | os.PathLike) -> dict | None:
    """``directory``/verdicts.json in today's form (genrobust.core.upgrade.upgrade_verdicts), or None where none was
    written (an older results directory); one of a schema_version this code does not know is a ResultsError."""
    path = Path(directory) / VERDICTS_NAME
    if not path.is_file():
        return None
    try:
        return upgrade_verdicts(read_json(path), str(path))
    except ValueError as err:
        raise ResultsError(str(err)) from None
