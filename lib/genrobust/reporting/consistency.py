"""The files' status and provenance tables; whether they describe the same models, code, machines.

What the report says about its results files themselves: their status, their provenance, and whether they
describe the same classifiers, code and machines (the weights digests each later file records against the models
01 trained and 02 calibrated)."""
from __future__ import annotations

import pandas as pd

from .metrics_files import METRICS_FILES, Source
from .setting import canonical, fmt_value


def status_table(sources: dict[str, Source]) -> pd.DataFrame:
    """Per metrics file: its notebook, whether it was read (ok, not run yet, unreadable) and what it holds."""
    return pd.DataFrame([{"notebook": nb, "results file": s.path.name, "status": s.status,
                          "holds": METRICS_FILES[nb]} for nb, s in sources.items()])


def provenance_table(sources: dict[str, Source]) -> pd.DataFrame:
    """Where every number comes from: per results file its config hash, git commit, data source and run facts."""
    rows = []
    for nb, s in sources.items():
        p, ds = s.provenance, s.data_source or {}
        rows.append({"results file": s.path.name, "status": s.status, "created": p.get("created"),
                     "git commit": s.commit[:12] + ("-dirty" if s.commit.endswith("-dirty") else "") if s.ok else None,
                     "config hash": s.config_hash, "data source": ds.get("name") if s.ok else None,
                     "data sha256": (ds.get("sha256") or "none (synthetic)")[:16] if s.ok and ds else None,
                     "seed": p.get("seed"), "device": (p.get("device") or {}).get("device"),
                     "wall time (min)": round(p["wall_time_s"] / 60, 2) if p.get("wall_time_s") else None,
                     # summed time of jobs that ran side by side (training): compute, not wall time
                     "job time (min)": round(p["job_time_s"] / 60, 2) if p.get("job_time_s") else None,
                     "torch": (p.get("packages") or {}).get("torch")})
    return pd.DataFrame(rows)


def consistency_notes(sources: dict[str, Source]) -> list[str]:
    """Do the files describe the same classifiers (same data/model/train/softmax settings) and the same code?"""
    notes = []
    ok = {nb: s for nb, s in sources.items() if s.ok and s.config}
    base = next(iter(ok.values()), None)
    for nb, s in ok.items():
        if base is None or s is base:
            continue
        for sec in ("data", "model", "train", "softmax"):
            if nb == "05_ablations" and sec in ("data", "model", "train"):
                continue  # the ablation runs vary these by design
            a, b = base.config.get(sec), s.config.get(sec)
            if a is not None and b is not None and canonical(a) != canonical(b):
                diff = [f"{sec}.{k} {fmt_value(b.get(k))} vs {fmt_value(a.get(k))}" for k in a
                        if canonical(a.get(k)) != canonical(b.get(k))]
                notes.append(f"{s.path.name} and {base.path.name} record different {sec} settings "
                             f"({'; '.join(diff)}): their numbers may not describe the same classifiers.")
    commits = {s.commit for s in sources.values() if s.ok}
    if len(commits) > 1:
        notes.append(f"The results files come from {len(commits)} different git commits: "
                     f"{', '.join(sorted(commits))}.")
    if any(c.endswith("-dirty") for c in commits):
        notes.append("At least one results file was written from a checkout with uncommitted changes (-dirty).")
    elif len(commits) == 1 and len(ok) == len(sources):
        notes.append(f"Every results file comes from commit {next(iter(commits))[:12]} with a clean working tree.")
    return notes + model_chain_notes(sources) + machine_notes(sources)


def _digest_pairs(sources: dict[str, Source]) -> list[tuple[str, str | None, str | None]]:
    """(what, digest recorded downstream, digest of the model it must be) for every model a later file names."""
    rec = {nb: s.record for nb, s in sources.items() if s.ok}
    r1, r2 = rec.get("01_training") or {}, rec.get("02_calibration") or {}
    dk = [b.get("weights_sha256") for b in sorted(r1.get("binary") or [], key=lambda b: b["k"])]
    soft = (r1.get("softmax") or {}).get("weights_sha256")
    pairs = []
    if dk and r2.get("binary_weights_sha256"):
        pairs += [(f"02's d_{k}", got, want) for k, (got, want) in enumerate(zip(r2["binary_weights_sha256"], dk))]
    for nb in ("03_accuracy", "04_generation_fid"):
        ck = (rec.get(nb) or {}).get("checkpoints") or {}
        if "generative" in ck and r2.get("weights_sha256"):
            pairs.append((f"{nb}'s generative classifier", ck["generative"]["weights_sha256"], r2["weights_sha256"]))
        if "softmax" in ck and soft:
            pairs.append((f"{nb}'s softmax baseline", ck["softmax"]["weights_sha256"], soft))
    return pairs


def model_chain_notes(sources: dict[str, Source]) -> list[str]:
    """Do 02-04 use 01's models? Compares the weights digests each file records with the ones they must equal."""
    pairs = _digest_pairs(sources)
    bad = [f"{what} {got[:12]} vs {want[:12]}" for what, got, want in pairs if got != want]
    if bad:
        return [f"Weights digests differ from the models they should be ({'; '.join(bad)}): these files describe "
                "different classifiers (re-run them on 01's models)."]
    per_file: dict[str, int] = {}
    for what, _, _ in pairs:
        per_file[what[:2]] = per_file.get(what[:2], 0) + 1
    return [f"Same models throughout: the {len(pairs)} weights digests recorded downstream ("
            + ", ".join(f"{n} in {nb}" for nb, n in per_file.items())
            + ") equal those of the models 01 trained and 02 calibrated."] if pairs else []


def machine_notes(sources: dict[str, Source]) -> list[str]:
    """The CPU kinds the files were written on: training is bitwise reproducible on one kind only."""
    kinds = {}
    for nb, s in sources.items():
        dev = s.provenance.get("device") or {}
        if s.ok and dev.get("cpu_capability"):
            kinds.setdefault(f"{dev.get('cpu_model') or 'unknown CPU'}, torch kernels {dev['cpu_capability']}",
                             []).append(nb[:2])
    if not kinds:
        return []
    return ["Machines (CPU, torch's kernel family; training is bitwise reproducible only on one kind): "
            + "; ".join(f"{k} for {', '.join(v)}" for k, v in kinds.items()) + "."]
